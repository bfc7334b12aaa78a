-- Brings a device's refresh credential up to a later secret of its chain, in one step: the
-- rotations a Redis restored from an older backup lost are replayed (their secrets spent, as
-- they were), never revoking. Two requests racing through it (two tabs presenting one cookie)
-- see the family moved and go on as two refreshes of one secret (rotate.lua: `concurrent`).
-- KEYS[1] family      hash (see rotate.lua)
-- KEYS[2] spent       list of rotated-away secret hashes, newest first
-- ARGV[1] target      sha256 hex of the presented secret, the chain's later one
-- ARGV[2] now_ms
-- ARGV[3] ttl_s       the family's lifetime from now
-- ARGV[4] spent_max   how many rotated-away hashes to remember
-- ARGV[5..] the chain from the hash Redis holds (ARGV[5]) to the one before the target, in order
-- Returns 'caught_up' (the target is current now), 'moved' (another request caught it up: the
-- target is current or was just rotated away), or 'no' (anything else: left as it is).
local family, spent = KEYS[1], KEYS[2]
local target, now_ms, ttl_s, spent_max = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local f = redis.call('HMGET', family, 'user', 'secret', 'previous', 'revoked')
if not f[1] or f[4] == '1' then return 'no' end
if f[2] == target or f[3] == target then return 'moved' end
if f[2] ~= ARGV[5] then return 'no' end
for i = 5, #ARGV do
  redis.call('LPUSH', spent, ARGV[i])
end
redis.call('LTRIM', spent, 0, spent_max - 1)
redis.call('HSET', family, 'secret', target, 'previous', ARGV[#ARGV], 'rotated_ms', now_ms, 'last_used_ms', now_ms,
  'expires_ms', now_ms + ttl_s * 1000, 'kept_ms', now_ms)
redis.call('EXPIRE', family, ttl_s)
redis.call('EXPIRE', spent, ttl_s)
return 'caught_up'
