-- Attaches one material (voice, text, photo, document) to an open voice session.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the session's materials list
--   ARGV[6]  the material, JSON object (also the event data)
--   ARGV[7]  most materials a session may hold
-- Returns {offset, count} or {false, code}: session_not_found, invalid_state (closed),
-- rate_limited (full).
local open = redis.call('HGET', KEYS[3], 'is_active')
if not open then
  return {false, 'session_not_found'}
end
if open ~= '1' then
  return {false, 'invalid_state'}
end
local count = redis.call('LLEN', KEYS[4])
if count >= tonumber(ARGV[7]) then
  return {false, 'rate_limited'}
end
redis.call('RPUSH', KEYS[4], ARGV[6])
redis.call('HSET', KEYS[3], 'updated_at', ARGV[4])
return {append_event('material_added', ARGV[6]), count + 1}
