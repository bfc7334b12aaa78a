-- Moves a voice session's status pictogram, checking the transition atomically.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   ARGV[6]  the new status
--   ARGV[7]  the statuses it may be entered from, comma separated, wrapped in commas
--            (",ready,paused,"); the transition table lives in storage/voice.py
-- Returns {offset, previous} or {false, code, previous}.
local previous = redis.call('HGET', KEYS[3], 'status')
if not previous then
  return {false, 'session_not_found', ''}
end
if previous == ARGV[6] then
  return {0, previous}
end
if not string.find(ARGV[7], ',' .. previous .. ',', 1, true) then
  return {false, 'invalid_state', previous}
end
redis.call('HSET', KEYS[3], 'status', ARGV[6], 'updated_at', ARGV[4])
local data = '{"status":"' .. ARGV[6] .. '","previous":"' .. previous .. '"}'
return {append_event('session_status', data), previous}
