-- Shared part of every script that changes a listening history (prepended after the core
-- prologue by storage/listening/repository.py). Every listening script takes the same keys, all under the
-- history session's hash tag, so one report is one atomic step on one slot.
--   KEYS[3]   the history session hash          (kind, owner_id)
--   KEYS[4]   records: hash id -> JSON record
--   KEYS[5]   by_start: zset id by started_at
--   KEYS[6]   by_item: zset of 'item NUL started_at(15 digits) NUL id', read by lex range
--   KEYS[7]   items: zset item id -> total ms
--   KEYS[8]   meta: hash item id -> JSON metadata
--   KEYS[9]   open: hash device id -> open session id
--   KEYS[10]  last: hash device id -> last finalized session id (the resume candidate)
--   KEYS[11]  stats: hash total_ms, count, max_span_ms
--   KEYS[12]  clients: hash upload client_id -> session id
--   ARGV[6]   the performer's user id ('' for a token without the update permission, which
--             owns nothing)
--   ARGV[7]   event type of a session change
--   ARGV[8]   event type of a removal
-- Every listening script takes these after core/_event.lua's KEYS[1..2], ARGV[1..5]; its own
-- arguments start at ARGV[9].
-- A record (JSON in `records`) holds the session as clients see it plus fields for the
-- scripts alone, never sent out: `resume`, while a resumed session is open, what it was before
-- the resume ({at_ms, ended_at, written_at, end_position_s}: a resume that ends under the
-- minimum is undone); `resumable = false` on a session the silence sweep ended; `heard_late`
-- once a pause pressed before that sweep, heard after it, extended the session; `paused_by`, the
-- ids of the last pauses that ended or extended it (report.lua).
local history_key = KEYS[3]
local records_key = KEYS[4]
local by_start_key = KEYS[5]
local by_item_key = KEYS[6]
local items_key = KEYS[7]
local meta_key = KEYS[8]
local open_key = KEYS[9]
local last_key = KEYS[10]
local stats_key = KEYS[11]
local clients_key = KEYS[12]
local performer = ARGV[6]
local session_event = ARGV[7]
local removed_event = ARGV[8]

-- Writing is for the history's owner only (a read_all token may read, never report).
local function owner_refusal()
  local found = redis.call('HMGET', history_key, 'kind', 'owner_id')
  if found[1] ~= 'listening' then
    return 'session_not_found'
  end
  if found[2] ~= performer then
    return 'forbidden'
  end
  return nil
end

local function load(id)
  if not id then
    return nil
  end
  local raw = redis.call('HGET', records_key, id)
  if not raw then
    return nil
  end
  return cjson.decode(raw)
end

local function save(rec)
  redis.call('HSET', records_key, rec.id, cjson.encode(rec))
end

local function item_member(rec)
  return rec.item_id .. '\0' .. string.format('%015d', rec.started_at) .. '\0' .. rec.id
end

-- Totals move with every change of a range, so stats never scan sessions.
local function add_time(rec, delta_ms)
  if delta_ms ~= 0 then
    redis.call('HINCRBY', stats_key, 'total_ms', delta_ms)
    redis.call('ZINCRBY', items_key, delta_ms, rec.item_id)
  end
end

-- The longest span bounds how far back a time-range read must look for overlapping sessions.
local function note_span(rec)
  local span = rec.ended_at - rec.started_at
  if span > tonumber(redis.call('HGET', stats_key, 'max_span_ms') or '0') then
    redis.call('HSET', stats_key, 'max_span_ms', span)
  end
end

local function insert(rec)
  save(rec)
  redis.call('ZADD', by_start_key, rec.started_at, rec.id)
  redis.call('ZADD', by_item_key, 0, item_member(rec))
  redis.call('ZINCRBY', items_key, 0, rec.item_id)
  redis.call('HINCRBY', stats_key, 'count', 1)
  add_time(rec, rec.ended_at - rec.started_at)
  note_span(rec)
end

-- The fields of an item's metadata that a report or upload brings (`meta_json`, '' for none)
-- laid over those stored: every field is optional, and a player that sends some (a duration
-- learnt later) left the item with only those, its title and artist gone from every session.
local function merge_meta(item_id, meta_json)
  if meta_json == '' then
    return
  end
  local stored_json = redis.call('HGET', meta_key, item_id)
  if not stored_json then
    redis.call('HSET', meta_key, item_id, meta_json)
    return
  end
  local stored = cjson.decode(stored_json)
  local changed = false
  for name, value in pairs(cjson.decode(meta_json)) do
    if stored[name] ~= value then
      stored[name] = value
      changed = true
    end
  end
  if changed then
    redis.call('HSET', meta_key, item_id, cjson.encode(stored))
  end
end

-- Removes a session, and with the item's last session the item itself (its total and its
-- metadata): kept, a history whose sessions were all taps or deleted still counted every item
-- it ever held against the most distinct items, and refused every new one (audit "retention").
local function remove(rec)
  redis.call('HDEL', records_key, rec.id)
  redis.call('ZREM', by_start_key, rec.id)
  redis.call('ZREM', by_item_key, item_member(rec))
  redis.call('HINCRBY', stats_key, 'count', -1)
  add_time(rec, rec.started_at - rec.ended_at)
  local prefix = rec.item_id .. '\0'
  if #redis.call('ZRANGEBYLEX', by_item_key, '[' .. prefix, '(' .. rec.item_id .. '\1', 'LIMIT', 0, 1) == 0 then
    redis.call('ZREM', items_key, rec.item_id)
    redis.call('HDEL', meta_key, rec.item_id)
  end
  if redis.call('HGET', open_key, rec.device_id) == rec.id then
    redis.call('HDEL', open_key, rec.device_id)
  end
  if redis.call('HGET', last_key, rec.device_id) == rec.id then
    redis.call('HDEL', last_key, rec.device_id)
  end
end

-- A session's range moved to end at `end_ms` (written now), its totals with it, and stored.
-- `position_at` (for the scripts alone) is when its place was last reported: a report without one
-- moves the range, not the place (a switch's estimate of the place counts from it).
local function stretch(rec, end_ms, position)
  add_time(rec, end_ms - rec.ended_at)
  rec.ended_at = end_ms
  rec.written_at = now_ms
  if position then
    rec.end_position_s = position
    rec.position_at = end_ms
  end
  save(rec)
  note_span(rec)
end

-- The record as clients see it: without the fields kept for the scripts alone.
local function shown(rec)
  local copy = {}
  for name, value in pairs(rec) do
    if name ~= 'resume' and name ~= 'resumable' and name ~= 'heard_late' and name ~= 'paused_by'
        and name ~= 'position_at' then
      copy[name] = value
    end
  end
  return copy
end

local function session_changed(action, reason, rec)
  return append_event(session_event, cjson.encode({action = action, reason = reason, session = shown(rec)}))
end

-- A resume that ends under `min_ms` after it began was an accidental tap on a paused session:
-- the session goes back to what it was before it (its end, position and totals), as a tap
-- that started a session is deleted. Measured from the session's start, it would never fire.
local function undo_resume(rec, at_ms, min_ms)
  local before = rec.resume
  rec.resume = nil
  if not before or at_ms - before.at_ms >= min_ms then
    return false
  end
  add_time(rec, before.ended_at - rec.ended_at)
  rec.ended_at = before.ended_at
  rec.written_at = before.written_at
  rec.end_position_s = before.end_position_s
  rec.position_at = before.position_at
  return true
end

-- Closes an open session at `at_ms`: under `min_ms` from its start it was an accidental tap and
-- is deleted; under `min_ms` from its resume, the resume is undone; else its range ends at
-- `at_ms`. A session the sweep ends (`silent`: a crash, a closed tab) is never resumed: the
-- time until the player came back was not a pause (seed 003). Returns the action and the event
-- offset.
local function finalize(rec, at_ms, position, reason, min_ms)
  redis.call('HDEL', open_key, rec.device_id)
  if at_ms - rec.started_at < min_ms then
    remove(rec)
    return 'deleted', append_event(removed_event, cjson.encode({id = rec.id, item_id = rec.item_id, reason = 'short'}))
  end
  if not undo_resume(rec, at_ms, min_ms) then
    add_time(rec, at_ms - rec.ended_at)
    rec.ended_at = at_ms
    rec.written_at = at_ms
    if position then
      rec.end_position_s = position
      rec.position_at = at_ms
    end
    if reason == 'silent' then
      rec.resumable = false
    end
  end
  rec.open = false
  save(rec)
  note_span(rec)
  redis.call('HSET', last_key, rec.device_id, rec.id)
  return 'finalized', session_changed('finalized', reason, rec)
end
