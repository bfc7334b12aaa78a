-- Moves a stream session along created -> active <-> paused -> ended, closing and opening its
-- segments in the same step: two streamer tabs pressing Pause at once give one closed segment
-- (the second finds the state already paused and is refused), never two and never none.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the session's segment list (JSON objects, index order)
--   ARGV[6]  the performer's user id (only the owner changes the state)
--   ARGV[7]  the action (start, pause, resume, end), echoed in the state event
--   ARGV[8]  the states the action may be taken from, comma separated and wrapped in commas
--   ARGV[9]  the state it leads to
--   ARGV[10] '1' when the action opens a new segment
--   ARGV[11] event type of a state change (stream_state)
--   ARGV[12] event type of an opened segment (segment_opened)
--   ARGV[13] event type of a closed segment (segment_closed)
--   ARGV[14] most segments a session may have (every snapshot carries them all)
-- Returns {last offset, previous state, state sequence number, open segment index (0: none),
-- audience session id} or {false, code[, detail]}: session_not_found, forbidden, invalid_state
-- (detail: the current state), limit_reached (detail: the cap). The sequence number orders the
-- copies of state changes on the audience session (see audience_state.lua).
local session_key = KEYS[3]
local segments_key = KEYS[4]
local performer = ARGV[6]
local action = ARGV[7]
local allowed_from = ARGV[8]
local next_state = ARGV[9]
local opens_segment = ARGV[10] == '1'
local state_event = ARGV[11]
local opened_event = ARGV[12]
local closed_event = ARGV[13]
local max_segments = tonumber(ARGV[14])

local found = redis.call('HMGET', session_key, 'kind', 'owner_id', 'state', 'seg_index', 'seg_started_at', 'seg_closed_ms',
  'audience_id')
if found[1] ~= 'stream' then
  return {false, 'session_not_found'}
end
if found[2] ~= performer then
  return {false, 'forbidden'}
end
local previous = found[3]
if not string.find(allowed_from, ',' .. previous .. ',', 1, true) then
  return {false, 'invalid_state', previous}
end

local seg_index = tonumber(found[4] or '0')
if opens_segment and seg_index >= max_segments then
  return {false, 'limit_reached', max_segments}
end

local offset = 0
-- A segment is open exactly while the session is active; every move out of active closes it.
if found[5] and found[5] ~= '' then
  local started_at = tonumber(found[5])
  -- Never before it began: the two times may come from two nodes (each keeps Redis' time, to
  -- within a few ms: storage/clock.py), and a negative length put clips before the stream.
  local ended_at = math.max(now_ms, started_at)
  local closed_ms = tonumber(found[6] or '0') + (ended_at - started_at)
  local segment = {index = seg_index, started_at = started_at, ended_at = ended_at, length_ms = ended_at - started_at}
  redis.call('LSET', segments_key, -1, cjson.encode(segment))
  redis.call('HSET', session_key, 'seg_started_at', '', 'seg_closed_ms', closed_ms)
  offset = append_event(closed_event, cjson.encode({segment = segment, closed_ms = closed_ms}))
end

redis.call('HSET', session_key, 'state', next_state, 'updated_at', now_ms)
if next_state == 'ended' then
  redis.call('HSET', session_key, 'ended_at', now_ms)
end
offset = append_event(state_event, cjson.encode({state = next_state, previous = previous, action = action}))

if opens_segment then
  seg_index = seg_index + 1
  local segment = {index = seg_index, started_at = now_ms, ended_at = cjson.null, length_ms = cjson.null}
  redis.call('RPUSH', segments_key, cjson.encode(segment))
  redis.call('HSET', session_key, 'seg_index', seg_index, 'seg_started_at', now_ms)
  offset = append_event(opened_event, cjson.encode({segment = segment}))
end
local state_seq = redis.call('HINCRBY', session_key, 'state_seq', 1)
return {offset, previous, state_seq, next_state == 'active' and seg_index or 0, found[7] or ''}
