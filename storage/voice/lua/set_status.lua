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
--   ARGV[14] '1' when the recorder resumes its own recording (its connection came back)
--   ARGV[15] '1' for a recorder's `paused` of its own recording only (`own`): the FAB stopping
--            because it heard a pause pressed elsewhere says so once more, and that word must
--            not pause another recorder that took the session up meanwhile
-- A holder is "<node>:<sid>" or "<node>:<sid>:<recorder>", the recorder being the FAB's own id,
-- the same across its reconnections. A resume, or an own pause, finding the lease held by another
-- recorder is refused {false, 'invalid_state', 'recording_elsewhere'}: the phone back after the
-- laptop paused it and then recorded itself took the laptop's lease, and its late word of the old
-- pause paused the laptop (audit "verify50"). Holders without a recorder compare as before.
-- A session the server paused because its recorder went (`paused_by` 'recorder_gone', set by
-- recording_end.lua) is resumed by that recorder when it comes back; one a person paused meanwhile
-- (another tab's or device's Pause) is not: that resume is refused {false, 'invalid_state',
-- 'paused_elsewhere'}, and the recorder stops. A phone whose connection went silent came back and
-- recorded on over the Pause pressed on the laptop (audit "verify49").
-- With a holder, entering recording/cutting/final_uploading gives it the lease and any other status ends the
-- lease, in the same step as the change: no moment shows a recording without a lease. When the
-- status stays, the lease moves only to a recorder that resumes (it takes its lease over from
-- its own gone connection) or when nobody holds it: another recorder's Rec, refused as
-- `changed: false`, took the lease of the one recording, and its leaving paused them.
-- Returns {offset, previous, holds} (offset 0: already in that status; holds 1: the holder has
-- the lease now) or {false, code, previous}.
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
local resume = ARGV[14]
local own = ARGV[15]

local function recorder_of(lease_holder)
  return string.match(lease_holder, '^[^:]*:[^:]*:(.+)$')
end

-- Whether another recorder than this request's holds the lease now (unknown: it does not).
local function another_records()
  local current = redis.call('GET', lease_key)
  if not current or current == holder then
    return false
  end
  local theirs, mine = recorder_of(current), recorder_of(holder)
  return theirs ~= nil and mine ~= nil and theirs ~= mine
end

-- kind, owner and status in one read (this runs for every status change)
local found = redis.call('HMGET', session_key, 'kind', 'owner_id', 'status', 'paused_by')
local refused = owner_access_refusal(found[1], found[2], 'voice', performer, read_scope, may_update)
if refused then
  return {false, refused, ''}
end
if found[2] ~= performer then
  return {false, 'forbidden', ''}
end
local previous = found[3]
-- the statuses a recorder holds the lease in: handlers/voice/recording.py RECORDING_STATUSES
local recording = status == 'recording' or status == 'cutting' or status == 'final_uploading'
local function take_lease()
  if holder == '' then
    return 0
  end
  if recording then
    redis.call('SET', lease_key, holder, 'PX', lease_ms)
    return 1
  end
  redis.call('DEL', lease_key)
  return 0
end
if status == 'paused' and previous == 'paused' and found[4] then
  redis.call('HDEL', session_key, 'paused_by') -- a person's pause now, whoever paused before
end
if resume == '1' and status == 'recording' and previous == 'paused' and found[4] ~= 'recorder_gone' then
  return {false, 'invalid_state', 'paused_elsewhere'}
end
local was_recording = previous == 'recording' or previous == 'cutting' or previous == 'final_uploading'
if was_recording and holder ~= '' and ((resume == '1' and recording) or (own == '1' and status == 'paused')) then
  if another_records() then
    return {false, 'invalid_state', 'recording_elsewhere'}
  end
end
if previous == status then
  if not recording or resume == '1' then
    return {0, previous, take_lease()}
  end
  local current = redis.call('GET', lease_key)
  if not current then
    return {0, previous, take_lease()}
  end
  return {0, previous, current == holder and 1 or 0}
end
if not string.find(allowed_from, ',' .. previous .. ',', 1, true) then
  return {false, 'invalid_state', previous}
end
local holds = take_lease()
redis.call('HSET', session_key, 'status', status, 'updated_at', now_text)
if found[4] then
  redis.call('HDEL', session_key, 'paused_by')
end
return {append_event(event_type, '{"status":' .. json_string(status) .. ',"previous":' .. json_string(previous) .. '}'), previous, holds}
