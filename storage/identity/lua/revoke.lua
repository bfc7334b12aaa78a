-- Revoke one device's refresh family, if it belongs to the user who asks.
-- KEYS[1] family   hash of the family
-- ARGV[1] user_id  the user who asks
-- ARGV[2] now_ms
-- Returns 1 when revoked (or already revoked), 0 when no such family of this user.
local family = KEYS[1]
local user_id, now_ms = ARGV[1], ARGV[2]
if redis.call('HGET', family, 'user') ~= user_id then return 0 end
redis.call('HSET', family, 'revoked', '1', 'revoked_ms', now_ms)
return 1
