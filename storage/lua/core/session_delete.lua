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
--   ARGV[9]     an orphan deletion's bound, unix ms, or '' for none: the session is deleted only
--               if it was not accessed since (its record's last_accessed_at, core/accessed.lua)
-- Returns {offset, kind, owner_id} or {false, code}: session_not_found, conflict (accessed
-- after the bound: a bulk orphan deletion counted it, then someone used it).
local session_key = KEYS[3]
local event_type = ARGV[6]
local data_json = ARGV[7]
local log_retention_ms = ARGV[8]
local orphan_bound = tonumber(ARGV[9])

local found = redis.call('HMGET', session_key, 'kind', 'owner_id', 'last_accessed_at')
if not found[1] then
  return {false, 'session_not_found'}
end
-- Checked here, in the step that deletes: the admin index (another slot) may lag a use by the
-- moment its background touch takes, and a check before this step could be overtaken.
if orphan_bound and tonumber(found[3] or '0') > orphan_bound then
  return {false, 'conflict'}
end
local offset = append_event(event_type, data_json)
for i = 3, #KEYS do
  redis.call('DEL', KEYS[i])
end
redis.call('PEXPIRE', log_key, log_retention_ms)
redis.call('PEXPIRE', log_meta_key, log_retention_ms)
return {offset, found[1], found[2] or ''}
