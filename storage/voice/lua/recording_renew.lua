-- Renews a recording lease for the connection holding it, while the session still records.
--   KEYS[1]  the session hash
--   KEYS[2]  the session's recording lease
--   ARGV[1]  the holder
--   ARGV[2]  the lease's time to live, ms
-- Returns 1 when renewed; 0 when the holder no longer holds it (moved to another, ended), or the
-- session stopped recording (the lease is then ended here: a closed session holds none).
-- A lease that ran out while its renewal was late (a node's loop held for seconds by 10,000
-- clients connecting at once) and that nobody else took, of a session still recording, is taken
-- again by its live holder: dropped, the next sweep paused a recorder whose connection was open
-- and well (audit "massdrop"). A holder that is gone renews nothing, so a dead recorder's lease
-- still runs out.
local session_key = KEYS[1]
local lease_key = KEYS[2]
local holder = ARGV[1]
local lease_ms = ARGV[2]

local current = redis.call('GET', lease_key)
if current and current ~= holder then
  return 0
end
local status = redis.call('HGET', session_key, 'status')
if status ~= 'recording' and status ~= 'cutting' and status ~= 'final_uploading' then
  if current then
    redis.call('DEL', lease_key)
  end
  return 0
end
if not current then
  redis.call('SET', lease_key, holder, 'PX', lease_ms)
  return 1
end
redis.call('PEXPIRE', lease_key, lease_ms)
return 1
