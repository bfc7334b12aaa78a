-- Extend one device's refresh family, if it still exists: its TTL (the memory bound, real time)
-- and its expiry on the server's clock (what the rotation judges), together.
-- KEYS[1] family      hash of the family
-- KEYS[2] spent       its rotated-away secret hashes
-- ARGV[1] ttl_s       the family's lifetime from now
-- ARGV[2] expires_ms  now + ttl_s on the server's clock
-- ARGV[3] now_ms      now on that clock: kept_ms, when expires_ms was written (rotate.lua judges
--                     expires_ms only when no use came after it: a previous release's)
-- Returns 1 when extended, 0 when the family is gone (nothing is written: a bare expires_ms
-- would make a record of no device).
local family, spent = KEYS[1], KEYS[2]
local ttl_s, expires_ms, now_ms = tonumber(ARGV[1]), ARGV[2], ARGV[3]
if redis.call('EXISTS', family) == 0 then return 0 end
redis.call('HSET', family, 'expires_ms', expires_ms, 'kept_ms', now_ms)
redis.call('EXPIRE', family, ttl_s)
redis.call('EXPIRE', spent, ttl_s)
return 1
