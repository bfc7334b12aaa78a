-- A player's status report (seed 003's rules, per user + device + item), in one atomic step:
-- `playing` extends the device's open session of this item (at most once per throttle
-- interval), or closes the device's open session of another item and then resumes the
-- device's last session of this item when it ended within the window, or starts a new one;
-- any other status finalizes the device's open session of this item at once.
--   KEYS[1..12], ARGV[1..8]  see core/_event.lua and _history.lua
--   KEYS[13]  the pauses heard: sorted set 'device NUL item NUL pause id' -> when it arrived (ms),
--             with a TTL
--   ARGV[9]   device id
--   ARGV[10]  item id
--   ARGV[11]  status: 'playing', 'paused' or 'stopped'
--   ARGV[12]  position in seconds, or '' when not reported
--   ARGV[13]  id for a new session (used only when one starts)
--   ARGV[14]  item metadata JSON, or '' when not reported
--   ARGV[15]  resume window, ms
--   ARGV[16]  throttle interval, ms
--   ARGV[17]  minimum session length, ms
--   ARGV[18]  most devices playing at once
--   ARGV[19]  most distinct items per history
--   ARGV[20]  most sessions per history
--   ARGV[21]  for a pause or stop: how long before this report, in ms, it was pressed (a report
--             sent again once the connection came back), else 0
--   ARGV[22]  for a pause or stop: its own id, the same for every send of one press, or ''
--   ARGV[23]  for `playing`: the session this play continues, by the player's word (it played on
--             without a stop since that session's last report was heard), or ''
-- Returns {offset, action, record JSON or '', the item's stored metadata JSON or ''} where
-- action is 'started', 'resumed', 'extended', 'throttled', 'finalized', 'deleted' or 'none'
-- (offset 0: nothing changed), or {false, code}. The metadata rides along so that the ack of a
-- report without `item` shows what the history shows.
local device = ARGV[9]
local item = ARGV[10]
local status = ARGV[11]
local position = tonumber(ARGV[12])
local new_id = ARGV[13]
local meta_json = ARGV[14]
local window_ms = tonumber(ARGV[15])
local throttle_ms = tonumber(ARGV[16])
local min_ms = tonumber(ARGV[17])
local max_devices = tonumber(ARGV[18])
local max_items = tonumber(ARGV[19])
local max_sessions = tonumber(ARGV[20])
local ago_ms = tonumber(ARGV[21])
local pause_id = ARGV[22]
local continues = ARGV[23]
local pauses_key = KEYS[13]

local function answer(offset, action, rec_json)
  return {offset, action, rec_json, rec_json ~= '' and redis.call('HGET', meta_key, item) or ''}
end

local refused = owner_refusal()
if refused then
  return {false, refused}
end

local current = load(redis.call('HGET', open_key, device))

-- Metadata a report brings is laid over the item's (merge_meta), whatever the report does with
-- the session (a player that learns the title after it started, an extension, a pause): only
-- a start or a resume stored it, and the history kept the first title for good.
local function keep_meta()
  merge_meta(item, meta_json)
end

-- A pause or stop pressed `ago_ms` before it arrived (offline, or its answer lost) ends the
-- session when it was pressed, not when it arrived: the time between was not listened to. Never
-- before the session's last write (what the player reported then was heard), nor after now.
-- A pause's id is heard once: the same press sent again (its answer lost, or kept by two tabs of
-- the player and sent by both) changes nothing, whatever its first send did (ended, extended or
-- deleted a session, or nothing) and whatever happened since (another item played, the session
-- deleted, the history cleared): arriving after the person played the item again, it ended that
-- new play at its last report. The ids heard are kept a day, at most PAUSES_KEPT of them; the
-- session a pause ended or extended keeps it too (its last few), so that a resend is answered as
-- the first send was (`finalized`, with the session) while that pause still stands, else `none`
-- (a resume takes the ids off the session: its pause no longer stands).
local PAUSE_IDS_KEPT = 8
local PAUSES_KEPT = 1000
local PAUSE_ID_KEPT_MS = 86400000

local function paused_by(rec)
  if not rec or rec.item_id ~= item or type(rec.paused_by) ~= 'table' then
    return false
  end
  for _, id in ipairs(rec.paused_by) do
    if id == pause_id then
      return true
    end
  end
  return false
end

local function note_pause(rec)
  if pause_id == '' then
    return
  end
  local ids = type(rec.paused_by) == 'table' and rec.paused_by or {}
  table.insert(ids, pause_id)
  while #ids > PAUSE_IDS_KEPT do
    table.remove(ids, 1)
  end
  rec.paused_by = ids
end

if status ~= 'playing' then
  local pressed_ms = now_ms - ago_ms
  if pause_id ~= '' then
    local last_rec = load(redis.call('HGET', last_key, device))
    for _, rec in ipairs({current or false, last_rec or false}) do
      -- Only the last pause the session heard still stands (one before it is another's press).
      if rec and paused_by(rec) and not rec.open and rec.paused_by[#rec.paused_by] == pause_id then
        return answer(0, 'finalized', cjson.encode(rec))
      end
    end
    -- One press of one device on one item: the same id from another is another press.
    local heard = device .. '\0' .. item .. '\0' .. pause_id
    if redis.call('ZSCORE', pauses_key, heard) then
      return answer(0, 'none', '')
    end
    redis.call('ZADD', pauses_key, now_ms, heard)
    redis.call('ZREMRANGEBYSCORE', pauses_key, '-inf', now_ms - PAUSE_ID_KEPT_MS)
    redis.call('ZREMRANGEBYRANK', pauses_key, 0, -(PAUSES_KEPT + 1))
    redis.call('PEXPIRE', pauses_key, PAUSE_ID_KEPT_MS)
  end
  if current and current.item_id == item then
    keep_meta()
    note_pause(current)
    local at_ms = math.max(pressed_ms, current.ended_at)
    local action, offset = finalize(current, at_ms, position, status, min_ms)
    return answer(offset, action, action == 'finalized' and cjson.encode(current) or '')
  end
  -- Pressed before the silence sweep ended the session at its last report (the player played
  -- on, offline, until the press): the session reaches the press, once (`heard_late`, a field
  -- for the scripts alone), at most a day on (as an upload: the player's word alone), and never
  -- into what was played since, on this device or another (the same minutes counted twice), nor
  -- past anything another device plays now.
  local last = ago_ms > 0 and load(redis.call('HGET', last_key, device)) or nil
  if last and last.item_id == item and last.resumable == false and not last.heard_late then
    local until_ms = math.min(pressed_ms, last.ended_at + 86400000)
    if current then
      until_ms = math.min(until_ms, current.started_at)
    end
    local since = redis.call('ZRANGEBYSCORE', by_start_key, '(' .. last.ended_at, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if #since > 0 then
      until_ms = math.min(until_ms, tonumber(since[2]))
    end
    if redis.call('HLEN', open_key) > (current and 1 or 0) then
      until_ms = last.ended_at
    end
    if until_ms > last.ended_at then
      keep_meta()
      last.heard_late = true
      note_pause(last)
      stretch(last, until_ms, position)
      return answer(session_changed('finalized', status, last), 'finalized', cjson.encode(last))
    end
  end
  return answer(0, 'none', '')
end

-- Where the open session's play has reached by now, from its last reported place moved on by the
-- wall time since (an open session is one playing), or nil when it reported none.
local function reached(rec)
  local at = rec.position_at or rec.written_at
  if type(rec.end_position_s) ~= 'number' or not at then
    return nil
  end
  return rec.end_position_s + math.max(now_ms - at, 0) / 1000
end

-- A `playing` whose place is not where the play would have reached (a seek, back or on): written
-- whatever the throttle, so that the session's place is the person's (a seek back 80 s within
-- the throttle interval, then a switch, left the place 80 s ahead: audit "verify49").
local SEEK_TOLERANCE_S = 3
local function sought(rec)
  local expected = reached(rec)
  return position ~= nil and expected ~= nil and math.abs(position - expected) > SEEK_TOLERANCE_S
end

if current and current.item_id == item then
  -- Coalescing: a player reports several times a second; the range moves every throttle_ms.
  -- Except the first write past the minimum length: a player that crashes before the
  -- throttle's first write would otherwise leave a session shorter than the minimum, deleted
  -- by the sweep; seed 003 wants it kept, ending slightly early.
  keep_meta()
  local short = current.ended_at - current.started_at < min_ms
  if now_ms - current.written_at < throttle_ms and not (short and now_ms - current.started_at >= min_ms)
      and not sought(current) then
    return answer(0, 'throttled', cjson.encode(current))
  end
  stretch(current, now_ms, position)
  return answer(session_changed('extended', nil, current), 'extended', cjson.encode(current))
end

-- Only the device's last session may resume (and only when nothing else is open on the
-- device, or only a tap that the switch deletes: it never becomes the device's last, so a tap
-- of another item and straight back does not split the book): resuming an older one would
-- stretch its range over what the device played since. One the sweep ended (a crash, a closed
-- tab) is not resumed either (`resumable = false`, _history.lua): its silence was no pause.
-- Nor does one whose pause another device played through: covering that pause would count the
-- same minutes twice (the book paused on the phone and played on the laptop meanwhile); a
-- session started since, or one open now on another device, says it did. This device's tap
-- open now (deleted by the switch below) is not one.
local function played_elsewhere_since(ended_at)
  local tap = current and current.id or ''
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', by_start_key, '(' .. ended_at, '+inf', 'LIMIT', 0, 2)) do
    if id ~= tap then
      return true
    end
  end
  return redis.call('HLEN', open_key) > (current and 1 or 0)
end

-- A play that went on while the player could not report (its node down, the network gone) past
-- the silence: the sweep ended its session at its last report, and the page, playing all along,
-- says so (`continues`). That session is taken up again over the silence, as one play (before,
-- it showed as three: the swept session, the span uploaded and a new one). On the player's word
-- alone, as an upload is: at most a day on, and never over what was played since (this device's
-- last session, of this item, not paused by its person: one the sweep ended).
local CONTINUED_WITHIN_MS = 86400000
local previous = nil
local continued = false
if not current or now_ms - current.started_at < min_ms then
  previous = load(redis.call('HGET', last_key, device))
  continued = previous ~= nil and continues ~= '' and previous.id == continues and previous.item_id == item
    and previous.resumable == false and not previous.heard_late and now_ms >= previous.ended_at
    and now_ms - previous.ended_at <= CONTINUED_WITHIN_MS and not played_elsewhere_since(previous.ended_at)
  if not continued and not (previous and previous.item_id == item and previous.resumable ~= false
      and now_ms >= previous.ended_at and now_ms - previous.ended_at < window_ms
      and not played_elsewhere_since(previous.ended_at)) then
    previous = nil
  end
end

-- Every limit is checked before anything changes: a refusal leaves the history as it was.
if not current and redis.call('HLEN', open_key) >= max_devices then
  return {false, 'limit_reached', 'devices:' .. max_devices}
end
if not redis.call('ZSCORE', items_key, item) and redis.call('ZCARD', items_key) >= max_items then
  return {false, 'limit_reached', 'items:' .. max_items}
end
if not previous and redis.call('HLEN', records_key) >= max_sessions then
  return {false, 'limit_reached', 'sessions:' .. max_sessions}
end

-- The other item's place when this one started: its last written position moved on by the wall
-- time since that write, as it played (an open session is one playing). A switch reports only
-- this item's position, and `playing` reports within the throttle interval are not written, so
-- the old session kept a place up to 5 s behind, where another device then resumed it (audit
-- "playerhonest"). At most the item's duration when its player said one.
local function switched_position(rec)
  local moved = reached(rec)
  if moved == nil then
    return nil
  end
  local meta_json = redis.call('HGET', meta_key, rec.item_id)
  local duration = meta_json and cjson.decode(meta_json).duration_s
  if type(duration) == 'number' and moved > duration then
    moved = math.max(duration, rec.end_position_s)
  end
  return math.floor(moved * 1000 + 0.5) / 1000
end

if current then
  finalize(current, now_ms, switched_position(current), 'switched', min_ms)
end
keep_meta()

if previous then
  if continued then
    previous.resumable = nil -- played on: no silence ended it
  else
    previous.resume = {
      at_ms = now_ms, ended_at = previous.ended_at, written_at = previous.written_at,
      end_position_s = previous.end_position_s,
    }
  end
  previous.open = true
  previous.paused_by = nil -- its pauses no longer stand (a resend is `none`)
  if not continued then
    previous.position_at = now_ms -- it plays on from where it was paused, not from before the pause
  end
  stretch(previous, now_ms, position)
  redis.call('HSET', open_key, device, previous.id)
  local offset = session_changed('resumed', continued and 'continued' or nil, previous)
  return answer(offset, 'resumed', cjson.encode(previous))
end

local rec = {
  id = new_id, item_id = item, device_id = device, source = 'live', open = true,
  started_at = now_ms, ended_at = now_ms, written_at = now_ms,
  start_position_s = position, end_position_s = position, position_at = position and now_ms or nil,
}
insert(rec)
redis.call('HSET', open_key, device, new_id)
return answer(session_changed('started', nil, rec), 'started', cjson.encode(rec))
