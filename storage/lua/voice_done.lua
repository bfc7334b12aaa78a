-- Closes a voice session (seed 002 Done). Repeating it is allowed: every call counts.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
-- Returns {offset, done_count, previous_status} or {false, 'session_not_found'}.
if redis.call('EXISTS', KEYS[3]) == 0 then
  return {false, 'session_not_found'}
end
local previous = redis.call('HGET', KEYS[3], 'status')
local done_count = redis.call('HINCRBY', KEYS[3], 'done_count', 1)
redis.call('HSET', KEYS[3], 'status', 'closed', 'is_active', '0', 'closed_at', ARGV[4],
  'updated_at', ARGV[4])
local offset = append_event('session_update', '{"is_active":false,"done_count":' ..
  done_count .. ',"closed_at":' .. ARGV[4] .. ',"updated_at":' .. ARGV[4] .. '}')
if previous ~= 'closed' then
  offset = append_event('session_status', '{"status":"closed","previous":"' .. previous .. '"}')
end
return {offset, done_count, previous}
