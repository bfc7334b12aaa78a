-- Deletes a session of any kind (an operator's deletion, or a companion session going with the
-- session it belongs to): the deletion is an event on the session's log (subscribers see it
-- live), then the record and the kind's own keys go and the log is kept a little while, so
-- that a client resuming from an offset learns what happened.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]     the session hash
--   KEYS[4..]   the kind's other keys of this session (deleted with it)
--   ARGV[6]     event type (session_deleted)
--   ARGV[7]     event data, JSON
--   ARGV[8]     how long the log is kept after the deletion, ms
-- Returns {offset, kind, owner_id} or {false, 'session_not_found'}.
local session_key = KEYS[3]
local event_type = ARGV[6]
local data_json = ARGV[7]
local log_retention_ms = ARGV[8]

local found = redis.call('HMGET', session_key, 'kind', 'owner_id')
if not found[1] then
  return {false, 'session_not_found'}
end
local offset = append_event(event_type, data_json)
for i = 3, #KEYS do
  redis.call('DEL', KEYS[i])
end
redis.call('PEXPIRE', log_key, log_retention_ms)
redis.call('PEXPIRE', log_meta_key, log_retention_ms)
return {offset, found[1], found[2] or ''}
