-- Deletes a pattern session (not a published one). The log outlives the record for a while,
-- so that subscribers see the deletion and late recoveries get an answer.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the session's players hash
--   KEYS[5]  the session's children index (its remixes; the remixes themselves stay)
--   KEYS[6]  the clients' last applied ops (op.lua)
--   ARGV[6]  the kind ('pattern')
--   ARGV[7]  event type (pattern_deleted)
--   ARGV[8]  event data, JSON object
--   ARGV[9]  how long the log is kept after the deletion, ms
-- Returns {offset} or {false, code}: session_not_found, forbidden (published).
local session_key = KEYS[3]
local players_key = KEYS[4]
local children_key = KEYS[5]
local seen_key = KEYS[6]
local kind = ARGV[6]
local event_type = ARGV[7]
local data_json = ARGV[8]
local retention_ms = ARGV[9]

local found = redis.call('HMGET', session_key, 'kind', 'immutable')
if found[1] ~= kind then
  return {false, 'session_not_found'}
end
if found[2] == '1' then
  return {false, 'forbidden'}
end
redis.call('DEL', session_key, players_key, children_key, seen_key)
local offset = append_event(event_type, data_json)
redis.call('PEXPIRE', log_key, retention_ms)
redis.call('PEXPIRE', log_meta_key, retention_ms)
return {offset}
