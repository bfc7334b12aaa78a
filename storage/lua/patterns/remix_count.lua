-- Counts one more remix of a pattern session. Its own atomic step (the new copy lives in
-- another hash slot), so concurrent remixes each count exactly once. Published sessions
-- count their remixes too: the count is lineage, not content.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the parent session hash
--   ARGV[6]  the kind ('pattern')
--   ARGV[7]  event type (pattern_meta)
-- Returns {offset, remix count} or {false, 'session_not_found'}.
local session_key = KEYS[3]
local kind = ARGV[6]
local event_type = ARGV[7]

if redis.call('HGET', session_key, 'kind') ~= kind then
  return {false, 'session_not_found'}
end
local count = redis.call('HINCRBY', session_key, 'remix_count', 1)
return {append_event(event_type, cjson.encode({remixCount = count})), count}
