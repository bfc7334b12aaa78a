-- Deletes a voice session and everything stored with it in its hash slot; the owner only.
-- The last event (session_update {deleted: true}) reaches the subscribers connected now; one
-- that subscribes later is answered session_not_found (the record is gone), and the log
-- expires a day later.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the session's materials list
--   KEYS[5]  the session's chunks hash
--   KEYS[6]  the session's chunk order
--   KEYS[7]  the session's chunk digest index
--   ARGV[6]  the performer's user id
--   ARGV[7]  the performer's read scope: 'all', 'own' or 'none'
--   ARGV[8]  '1' when the performer has the update permission
--   ARGV[9]  event type (session_update)
--   ARGV[10] seconds the log outlives the session
-- Returns {offset, storage_bytes} or {false, code}: session_not_found, forbidden.
local session_key = KEYS[3]
local materials_key = KEYS[4]
local chunks_key = KEYS[5]
local order_key = KEYS[6]
local digests_key = KEYS[7]
local performer = ARGV[6]
local read_scope = ARGV[7]
local may_update = ARGV[8]
local event_type = ARGV[9]
local log_ttl_s = tonumber(ARGV[10])

local refused = check_owner_access(session_key, 'voice', performer, read_scope, may_update)
if refused then
  return {false, refused}
end
if redis.call('HGET', session_key, 'owner_id') ~= performer then
  return {false, 'forbidden'}
end
local stored = tonumber(redis.call('HGET', session_key, 'storage_bytes') or '0')
local offset = append_event(event_type, cjson.encode({deleted = true, deleted_at = now_ms}))
redis.call('DEL', session_key, materials_key, chunks_key, order_key, digests_key)
redis.call('EXPIRE', log_key, log_ttl_s)
redis.call('EXPIRE', log_meta_key, log_ttl_s)
return {offset, stored}
