-- Renews a recording lease for the connection holding it, while the session still records.
--   KEYS[1]  the session hash
--   KEYS[2]  the session's recording lease
--   ARGV[1]  the holder
--   ARGV[2]  the lease's time to live, ms
-- Returns 1 when renewed; 0 when the holder no longer holds it (moved, ended, expired), or the
-- session stopped recording (the lease is then ended here: a closed session holds none).
local session_key = KEYS[1]
local lease_key = KEYS[2]
local holder = ARGV[1]
local lease_ms = ARGV[2]

if redis.call('GET', lease_key) ~= holder then
  return 0
end
local status = redis.call('HGET', session_key, 'status')
if status ~= 'recording' and status ~= 'cutting' and status ~= 'final_uploading' then
  redis.call('DEL', lease_key)
  return 0
end
redis.call('PEXPIRE', lease_key, lease_ms)
return 1
