-- Sets fields of an existing session and records the change as one event.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   ARGV[6]  event type
--   ARGV[7]  event data, JSON object
--   ARGV[8..] field, value pairs to set
-- Returns {offset} or {false, 'session_not_found'}.
if redis.call('EXISTS', KEYS[3]) == 0 then
  return {false, 'session_not_found'}
end
redis.call('HSET', KEYS[3], unpack(ARGV, 8))
return {append_event(ARGV[6], ARGV[7])}
