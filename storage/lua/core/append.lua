-- Appends one event that changes no state (a job outcome, a notice).
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash; the event is refused when the session does not exist
--   ARGV[6]  event type
--   ARGV[7]  event data, JSON object
-- Returns {offset} or {false, 'session_not_found'}.
local session_key = KEYS[3]
local event_type = ARGV[6]
local data_json = ARGV[7]

if redis.call('EXISTS', session_key) == 0 then
  return {false, 'session_not_found'}
end
return {append_event(event_type, data_json)}
