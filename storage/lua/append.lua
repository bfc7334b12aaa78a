-- Appends one event that changes no state (a job outcome, a notice).
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash; the event is refused when the session does not exist
--   ARGV[6]  event type
--   ARGV[7]  event data, JSON object
-- Returns {offset} or {false, 'session_not_found'}.
if redis.call('EXISTS', KEYS[3]) == 0 then
  return {false, 'session_not_found'}
end
return {append_event(ARGV[6], ARGV[7])}
