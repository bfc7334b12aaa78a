-- Closes a voice session (seed 002 Done), checking access in the same step. Repeating it is
-- allowed: every call counts.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   ARGV[6]  the performer's user id
--   ARGV[7]  the performer's read scope: 'all', 'own' or 'none'
--   ARGV[8]  '1' when the performer has the update permission
--   ARGV[9]  event type of the record change (session_update)
--   ARGV[10] event type of the status change (session_status)
-- Returns {offset, done_count, previous_status} or {false, code}: session_not_found, forbidden.
local session_key = KEYS[3]
local performer = ARGV[6]
local read_scope = ARGV[7]
local may_update = ARGV[8]
local update_type = ARGV[9]
local status_type = ARGV[10]

local refused = check_owner_access(session_key, 'voice', performer, read_scope, may_update)
if refused then
  return {false, refused}
end
local previous = redis.call('HGET', session_key, 'status')
local done_count = redis.call('HINCRBY', session_key, 'done_count', 1)
redis.call('HSET', session_key, 'status', 'closed', 'is_active', '0', 'closed_at', now_ms,
  'updated_at', now_ms)
local offset = append_event(update_type, cjson.encode({is_active = false, done_count = done_count,
  closed_at = now_ms, updated_at = now_ms}))
if previous ~= 'closed' then
  offset = append_event(status_type, cjson.encode({status = 'closed', previous = previous}))
end
return {offset, done_count, previous}
