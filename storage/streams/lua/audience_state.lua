-- Copies a stream session's state change onto its audience session: the log viewer pages
-- follow, which carries state changes only (a raid's clips would otherwise reach every viewer,
-- N x N deliveries). Runs after the stream's own transition, as its own step (another session,
-- another hash slot). Two changes can arrive here in either order: the stream's sequence number
-- keeps the later one, so the audience never ends on an older state.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the audience session hash
--   ARGV[6]  the stream's state sequence number of this change
--   ARGV[7]  the new state
--   ARGV[8]  the previous state
--   ARGV[9]  the action
--   ARGV[10] the open segment's index (0: none)
--   ARGV[11] event type (stream_state)
-- Returns {offset} (0: a later change is there already) or {false, 'session_not_found'}.
local audience_key = KEYS[3]
local seq = tonumber(ARGV[6])
local state = ARGV[7]
local previous = ARGV[8]
local action = ARGV[9]
local segment_index = tonumber(ARGV[10])
local event_type = ARGV[11]

local found = redis.call('HMGET', audience_key, 'kind', 'state_seq')
if found[1] ~= 'stream_audience' then
  return {false, 'session_not_found'}
end
if seq <= tonumber(found[2] or '0') then
  return {0}
end
redis.call('HSET', audience_key, 'state_seq', seq, 'state', state, 'segment_index', segment_index, 'updated_at', now_ms)
local data = {state = state, previous = previous, action = action, segment_index = segment_index}
return {append_event(event_type, cjson.encode(data))}
