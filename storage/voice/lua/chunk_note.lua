-- Sets fields on one stored chunk (a transcript, a processing note) and publishes the change.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the session's chunks hash
--   ARGV[6]  the chunk id
--   ARGV[7]  the fields to merge into the chunk, a JSON object
--   ARGV[8]  event type (chunk_updated)
-- Returns {offset} or {false, code}: session_not_found, not_found (no such chunk).
local session_key = KEYS[3]
local chunks_key = KEYS[4]
local chunk_id = ARGV[6]
local fields_json = ARGV[7]
local event_type = ARGV[8]

if redis.call('EXISTS', session_key) == 0 then
  return {false, 'session_not_found'}
end
local stored = redis.call('HGET', chunks_key, chunk_id)
if not stored then
  return {false, 'not_found'}
end
local chunk = cjson.decode(stored)
for key, value in pairs(cjson.decode(fields_json)) do
  chunk[key] = value
end
local updated = cjson.encode(chunk)
redis.call('HSET', chunks_key, chunk_id, updated)
return {append_event(event_type, string.format('{"chunk":%s}', updated))}
