-- Rotate one device's refresh credential: the presented secret must be the current one.
-- KEYS[1] family      hash: user, secret, previous, rotated_ms, last_used_ms, revoked, expires_ms,
--                     kept_ms (when expires_ms was written)
-- KEYS[2] spent       list of rotated-away secret hashes, newest first
-- ARGV[1] presented   sha256 hex of the presented secret
-- ARGV[2] fresh       sha256 hex of the secret that replaces it
-- ARGV[3] now_ms
-- ARGV[4] ttl_s       the family's lifetime from now (sliding): its TTL, and expires_ms on now_ms's clock
-- ARGV[5] grace_ms    how long the previous secret is answered without rotation (two tabs racing)
-- ARGV[6] spent_max   how many rotated-away hashes to remember
-- Returns {outcome, user, current}: outcome rotated | concurrent | reused | revoked | invalid |
-- missing (also a family past its expires_ms); current, the hash of the secret now current
-- ("" but for rotated and concurrent).
local family, spent = KEYS[1], KEYS[2]
local presented, fresh = ARGV[1], ARGV[2]
local now_ms, ttl_s = tonumber(ARGV[3]), tonumber(ARGV[4])
local grace_ms, spent_max = tonumber(ARGV[5]), tonumber(ARGV[6])

local f = redis.call('HMGET', family, 'user', 'secret', 'previous', 'rotated_ms', 'revoked', 'expires_ms',
  'kept_ms', 'last_used_ms')
local user, secret, previous, rotated_ms, revoked = f[1], f[2], f[3], tonumber(f[4]) or 0, f[5]
local expires_ms, kept_ms, last_used_ms = tonumber(f[6]), tonumber(f[7]), tonumber(f[8]) or 0
if not user then return {'missing', '', ''} end
-- Past its time on the server's clock, the family is gone as its TTL (real time) would have let
-- it go: with that clock moved (an operator's setting, tests), the TTL alone kept it for days.
-- A family written before this field (a previous release) has none: its TTL alone decides. So
-- does one a previous release's node used after the field was written (a rolling upgrade, a
-- rollback): that node extended the TTL and wrote last_used_ms, not expires_ms, which is stale.
if expires_ms and kept_ms and kept_ms >= last_used_ms and now_ms >= expires_ms then
  redis.call('DEL', family, spent)
  return {'missing', '', ''}
end
if revoked == '1' then return {'revoked', user, ''} end
if presented == secret then
  redis.call('HSET', family, 'secret', fresh, 'previous', secret, 'rotated_ms', now_ms, 'last_used_ms', now_ms,
    'expires_ms', now_ms + ttl_s * 1000, 'kept_ms', now_ms)
  redis.call('LPUSH', spent, secret)
  redis.call('LTRIM', spent, 0, spent_max - 1)
  redis.call('EXPIRE', family, ttl_s)
  redis.call('EXPIRE', spent, ttl_s)
  return {'rotated', user, fresh}
end
-- Two tabs refreshing at once present the same secret: the second one is not a thief.
if presented == previous and now_ms - rotated_ms <= grace_ms then
  return {'concurrent', user, secret}
end
if redis.call('LPOS', spent, presented) then
  redis.call('HSET', family, 'revoked', '1', 'revoked_ms', now_ms)
  return {'reused', user, ''}
end
return {'invalid', user, ''}
