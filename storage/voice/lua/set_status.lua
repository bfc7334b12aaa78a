-- Moves a voice session's status pictogram: access, ownership and the transition are checked
-- in the same step as the change (no read-then-write race between connections).
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   ARGV[6]  the performer's user id (only the owner's recorder sets the status)
--   ARGV[7]  the performer's read scope: 'all', 'own' or 'none'
--   ARGV[8]  '1' when the performer has the update permission
--   ARGV[9]  the new status
--   ARGV[10] the statuses it may be entered from, comma separated, wrapped in commas
--            (",ready,paused,"); the transition table lives in storage/voice/repository.py
--   ARGV[11] event type (session_status)
-- Returns {offset, previous} (offset 0: already in that status) or {false, code, previous}.
local session_key = KEYS[3]
local performer = ARGV[6]
local read_scope = ARGV[7]
local may_update = ARGV[8]
local status = ARGV[9]
local allowed_from = ARGV[10]
local event_type = ARGV[11]

-- kind, owner and status in one read (this runs for every status change)
local found = redis.call('HMGET', session_key, 'kind', 'owner_id', 'status')
local refused = owner_access_refusal(found[1], found[2], 'voice', performer, read_scope, may_update)
if refused then
  return {false, refused, ''}
end
if found[2] ~= performer then
  return {false, 'forbidden', ''}
end
local previous = found[3]
if previous == status then
  return {0, previous}
end
if not string.find(allowed_from, ',' .. previous .. ',', 1, true) then
  return {false, 'invalid_state', previous}
end
redis.call('HSET', session_key, 'status', status, 'updated_at', now_ms)
return {append_event(event_type, cjson.encode({status = status, previous = previous})), previous}
