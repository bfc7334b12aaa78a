-- Counts one more remix of a pattern session and records the remix among its children. Its
-- own atomic step (the new copy lives in another hash slot), so concurrent remixes each count
-- exactly once, and the children index never disagrees with the count. Published sessions
-- count their remixes too: the count is lineage, not content.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the parent session hash
--   KEYS[4]  the parent's children (sorted set: child id -> its creation, ms)
--   ARGV[6]  the kind ('pattern')
--   ARGV[7]  event type (pattern_meta)
--   ARGV[8]  the remix's session id
--   ARGV[9]  the remix's creation time, unix ms
-- Returns {offset, remix count} or {false, 'session_not_found'}; {0, remix count} when this
-- child is counted already (a call run again after its reply was lost counts once).
local session_key = KEYS[3]
local children_key = KEYS[4]
local kind = ARGV[6]
local event_type = ARGV[7]
local child_id = ARGV[8]
local child_created_ms = ARGV[9]

if redis.call('HGET', session_key, 'kind') ~= kind then
  return {false, 'session_not_found'}
end
if redis.call('ZSCORE', children_key, child_id) then
  return {0, tonumber(redis.call('HGET', session_key, 'remix_count') or '0')}
end
-- What this logs is not the pattern's state: the state's offset (its ETag) stays where it was.
-- A session from before `state_offset` existed gets it pinned at the current offset first.
if redis.call('HEXISTS', session_key, 'state_offset') == 0 then
  redis.call('HSET', session_key, 'state_offset', redis.call('HGET', log_meta_key, 'offset') or 0)
end
local count = redis.call('HINCRBY', session_key, 'remix_count', 1)
redis.call('ZADD', children_key, child_created_ms, child_id)
return {append_event(event_type, cjson.encode({remixCount = count})), count}
