-- Records an access in the session's own record (its hash slot), where the deletion of orphans
-- re-checks it in the step that deletes (core/session_delete.lua). Never creates a record: a
-- session deleted meanwhile stays deleted. The time only moves forward.
--   KEYS[1]  the session hash
--   ARGV[1]  the access time, unix ms
-- Returns 1 when recorded, 0 when there is no such session.
local session_key = KEYS[1]
local accessed_ms = tonumber(ARGV[1])

if redis.call('EXISTS', session_key) == 0 then
  return 0
end
if accessed_ms > tonumber(redis.call('HGET', session_key, 'last_accessed_at') or '0') then
  redis.call('HSET', session_key, 'last_accessed_at', accessed_ms)
end
return 1
