-- Records a published copy among its source's children (a publication is lineage but not a
-- remix: the count stays). Checked with the parent's existence in one step, so a source
-- deleted meanwhile never gets its children index back.
--   KEYS[1]  the parent session hash
--   KEYS[2]  the parent's children (sorted set: child id -> its creation, ms)
--   ARGV[1]  the kind ('pattern')
--   ARGV[2]  the child's session id
--   ARGV[3]  the child's creation time, unix ms
-- Returns 1 when recorded, 0 when the parent is gone.
local session_key = KEYS[1]
local children_key = KEYS[2]
local kind = ARGV[1]
local child_id = ARGV[2]
local child_created_ms = ARGV[3]

if redis.call('HGET', session_key, 'kind') ~= kind then
  return 0
end
redis.call('ZADD', children_key, child_created_ms, child_id)
return 1
