-- One viewer's "Clip Moment": state check, idempotency, cooldown, cap, offsets and the event in
-- one step, so a raid of a thousand clicks in one second stores each accepted click exactly
-- once. Every key shares the session's hash tag (one slot on Redis Cluster).
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the session's clips hash (clip id -> clip JSON)
--   KEYS[5]  the session's submissions hash (<user>|<submission id> -> clip id)
--   KEYS[6]  the viewer's cooldown key (unix ms when they may clip again)
--   KEYS[7]  the session's segment list (JSON objects, index order)
--   ARGV[6]  the viewer's user id
--   ARGV[7]  the client's submission id ('' when none was given)
--   ARGV[8]  the note (validated and trimmed by the caller; may be '')
--   ARGV[9]  cooldown between one viewer's clips, ms (0: none)
--   ARGV[10] most clips a session may hold
--   ARGV[11] a fresh clip id (used only when the clip is added)
--   ARGV[12] event type (clip_added)
--   KEYS[8]  the session's clip counts hash (u:<user> / a:<address> -> clips ever stored)
--   KEYS[9]  the session's blocked viewers set
--   KEYS[10] the session's own index (<viewer tag>:<seq, 15 digits>:<clip id>, score 0: own_clips.lua)
--   ARGV[13] most clips one viewer may store in the session
--   ARGV[14] the guest's client address ('' for a signed-in viewer: no address cap)
--   ARGV[15] most clips the guests of one address may store in the session
--   ARGV[16] how long before now the viewer pressed, ms (a click sent late; bounded by the caller)
-- Returns {offset, clip JSON, 0, 1 when it is the viewer's first clip in the session else 0} for
-- a stored click, {0, clip JSON or '', 1} for a retry of a stored submission ('' when the
-- owner deleted that clip since), or {false, code[, detail]}: session_not_found, invalid_state
-- (detail: state), rate_limited (detail: ms to wait), limit_reached (detail: the cap),
-- forbidden (detail: 'blocked', by the owner), quota_exceeded (detail: 'viewer:<cap>' or
-- 'address:<cap>').
local session_key = KEYS[3]
local clips_key = KEYS[4]
local submissions_key = KEYS[5]
local cooldown_key = KEYS[6]
local segments_key = KEYS[7]
local viewer = ARGV[6]
local submission_id = ARGV[7]
local note = ARGV[8]
local cooldown_ms = tonumber(ARGV[9])
local max_clips = tonumber(ARGV[10])
local clip_id = ARGV[11]
local event_type = ARGV[12]
local counts_key = KEYS[8]
local blocked_key = KEYS[9]
local max_per_viewer = tonumber(ARGV[13])
local address = ARGV[14]
local max_per_address = tonumber(ARGV[15])
local own_index_key = KEYS[10]
local pressed_ago_ms = tonumber(ARGV[16] or '0')

local s = redis.call('HMGET', session_key, 'kind', 'state', 'seg_index', 'seg_started_at', 'seg_closed_ms',
  'viewer_delay_s', 'clip_count', 'tag_salt')
if s[1] ~= 'stream' then
  return {false, 'session_not_found'}
end

local submission_field = viewer .. '|' .. submission_id
if submission_id ~= '' then
  local existing = redis.call('HGET', submissions_key, submission_field)
  if existing then
    return {0, redis.call('HGET', clips_key, existing) or '', 1}
  end
end

-- After the retry check: a click stored before its viewer was blocked is still answered.
if redis.call('SISMEMBER', blocked_key, viewer) == 1 then
  return {false, 'forbidden', 'blocked'}
end

-- The server's clock decides, and the viewer sees the stream `viewer_delay_s` behind live: the
-- click is about what was live at seen_at, less what the client says it waited to send it (a
-- connection lost and back). Target: {segment index, its start, the closed segments' length
-- before it}.
local delay_ms = tonumber(s[6] or '0') * 1000 + pressed_ago_ms
local seen_at = now_ms - delay_ms
local target = nil
if s[2] == 'active' then
  target = {tonumber(s[3]), tonumber(s[4]), tonumber(s[5] or '0')}
end
-- Right after Pause or End (or a short break and Resume), a delayed viewer still watches the
-- segment that was closed, and a click pressed before them may arrive after: the click belongs
-- to it, not to a refusal or to the new segment. Back through the closed segments, a few: one
-- shorter than the delay (Resume and End pressed in a breath) put a click seen in the segment
-- before it at 0:00 of one the viewer never saw. A click seen in a break goes to the segment
-- after it, at 0:00, as before.
if delay_ms > 0 and (target == nil or seen_at < target[2]) then
  local closed_before = tonumber(s[5] or '0')
  local from = target and -2 or -1
  for at = from, from - 3, -1 do
    local raw = redis.call('LINDEX', segments_key, at)
    if not raw then
      break
    end
    local seg = cjson.decode(raw)
    if type(seg.ended_at) ~= 'number' or seen_at > seg.ended_at then
      break
    end
    closed_before = closed_before - seg.length_ms
    target = {seg.index, seg.started_at, closed_before}
    if seen_at >= seg.started_at then
      break
    end
  end
end
if target == nil then
  return {false, 'invalid_state', s[2]}
end
local allowed_at = tonumber(redis.call('GET', cooldown_key) or '0')
if allowed_at > now_ms then
  return {false, 'rate_limited', allowed_at - now_ms}
end
local count = tonumber(s[7] or '0')
if count >= max_clips then
  return {false, 'limit_reached', max_clips}
end
-- Per viewer and per guest address: a few accounts (or thirty guest tokens from one address)
-- must not fill the session's cap for everyone.
local viewer_field = 'u:' .. viewer
if tonumber(redis.call('HGET', counts_key, viewer_field) or '0') >= max_per_viewer then
  return {false, 'quota_exceeded', 'viewer:' .. max_per_viewer}
end
local address_field = 'a:' .. address
if address ~= '' and tonumber(redis.call('HGET', counts_key, address_field) or '0') >= max_per_address then
  return {false, 'quota_exceeded', 'address:' .. max_per_address}
end

-- A click can never land before its segment's start.
local offset_ms = math.max(0, seen_at - target[2])
count = count + 1
local clip = {
  clip_id = clip_id,
  segment_index = target[1],
  offset_ms = offset_ms,
  stream_offset_ms = target[3] + offset_ms,
  note = note,
  submitted_by = viewer,
  -- Opaque per session: a viewer can recognise their own clips, nobody can tell who clipped.
  viewer_tag = string.sub(redis.sha1hex(s[8] .. '|' .. viewer), 1, 12),
  seq = redis.call('HINCRBY', session_key, 'clip_seq', 1),
  clipped = false,
  created_at = now_ms,
}
local clip_json = cjson.encode(clip)
redis.call('HSET', clips_key, clip_id, clip_json)
redis.call('HSET', session_key, 'clip_count', count)
local viewer_stored = redis.call('HINCRBY', counts_key, viewer_field, 1)
-- The viewer's clips are a range of the own index (own_clips.lua, clip_clear.lua): kept here, in
-- the clip's own step, as clip_delete.lua and clip_clear.lua keep it.
redis.call('ZADD', own_index_key, 0, clip.viewer_tag .. ':' .. string.format('%015d', clip.seq) .. ':' .. clip_id)
if address ~= '' then
  redis.call('HINCRBY', counts_key, address_field, 1)
end
if submission_id ~= '' then
  redis.call('HSET', submissions_key, submission_field, clip_id)
end
if cooldown_ms > 0 then
  redis.call('SET', cooldown_key, now_ms + cooldown_ms, 'PX', cooldown_ms)
end
-- The count rides inside the event: a separate counts event would double the log at a raid.
clip.submitted_by = nil
clip.count = count
-- The viewer's first clip here: the caller indexes the session among the viewer's (another slot).
return {append_event(event_type, cjson.encode(clip)), clip_json, 0, viewer_stored == 1 and 1 or 0}
