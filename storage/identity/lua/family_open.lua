-- Open a device's refresh family under an id chosen beforehand, once: a redemption sent again
-- with the same attempt opens the same device, and must not reset the one the first opened
-- (rotated since, or signed out).
-- KEYS[1] family   hash of the family
-- ARGV[1] ttl_s    the family's lifetime from now
-- ARGV[2..]        its fields, name and value in turn
-- Returns 1 when opened, 0 when the family existed already (nothing is written).
local family = KEYS[1]
local ttl_s = tonumber(ARGV[1])
if redis.call('EXISTS', family) == 1 then return 0 end
redis.call('HSET', family, unpack(ARGV, 2))
redis.call('EXPIRE', family, ttl_s)
return 1
