-- Attaches one material (voice, text, photo, document) to an open voice session.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the session's materials list
--   ARGV[6]  the material, JSON object (also the event data)
--   ARGV[7]  most materials a session may hold
--   ARGV[8]  event type (material_added)
--   ARGV[9]  the material's id
-- Returns {offset, count} ({0, count} when a material with that id is among the newest: a run
-- again of a call whose reply was lost) or {false, code}: session_not_found, invalid_state
-- (closed), limit_reached (full: waiting does not help, so not rate_limited).
local session_key = KEYS[3]
local materials_key = KEYS[4]
local material_json = ARGV[6]
local max_count = tonumber(ARGV[7])
local event_type = ARGV[8]
local material_id = ARGV[9]

local open = redis.call('HGET', session_key, 'is_active')
if not open then
  return {false, 'session_not_found'}
end
if open ~= '1' then
  return {false, 'invalid_state'}
end
local count = redis.call('LLEN', materials_key)
-- A call run again after its reply was lost finds its material at the end of the list.
for _, stored in ipairs(redis.call('LRANGE', materials_key, -16, -1)) do
  if cjson.decode(stored)['material_id'] == material_id then
    return {0, count}
  end
end
if count >= max_count then
  return {false, 'limit_reached'}
end
redis.call('RPUSH', materials_key, material_json)
redis.call('HSET', session_key, 'updated_at', now_ms)
return {append_event(event_type, material_json), count + 1}
