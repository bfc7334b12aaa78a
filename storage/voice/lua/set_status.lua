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
--   KEYS[4]  the session's recording lease (storage/voice/recording.py)
--   ARGV[12] the lease holder (node and connection), or '' to leave the lease alone
--   ARGV[13] the lease's time to live, ms
-- With a holder, entering recording/cutting gives it the lease (also when the status stays:
-- a reconnected recorder takes its lease over) and any other status ends the lease, in the
-- same step as the change: no moment shows a recording without a lease.
-- Returns {offset, previous} (offset 0: already in that status) or {false, code, previous}.
local session_key = KEYS[3]
local performer = ARGV[6]
local read_scope = ARGV[7]
local may_update = ARGV[8]
local status = ARGV[9]
local allowed_from = ARGV[10]
local event_type = ARGV[11]
local lease_key = KEYS[4]
local holder = ARGV[12]
local lease_ms = ARGV[13]

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
local function take_lease()
  if holder == '' then
    return
  end
  if status == 'recording' or status == 'cutting' then
    redis.call('SET', lease_key, holder, 'PX', lease_ms)
  else
    redis.call('DEL', lease_key)
  end
end
if previous == status then
  take_lease()
  return {0, previous}
end
if not string.find(allowed_from, ',' .. previous .. ',', 1, true) then
  return {false, 'invalid_state', previous}
end
take_lease()
redis.call('HSET', session_key, 'status', status, 'updated_at', now_text)
return {append_event(event_type, '{"status":' .. json_string(status) .. ',"previous":' .. json_string(previous) .. '}'), previous}
