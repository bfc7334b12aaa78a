-- Claims histories whose sweep is due: each is leased to this node (its score moved to the
-- lease's end), so no other node sweeps it meanwhile, and a node that dies mid-sweep only
-- delays it until the lease runs out.
--   KEYS[1]  the due zset (history id by due time, ms)
--   ARGV[1]  now, ms
--   ARGV[2]  lease end, ms
--   ARGV[3]  most histories to claim
-- Returns the claimed history ids.
local due_key = KEYS[1]
local now_ms = ARGV[1]
local lease_until = ARGV[2]
local limit = ARGV[3]

local claimed = redis.call('ZRANGEBYSCORE', due_key, '-inf', now_ms, 'LIMIT', 0, limit)
for _, id in ipairs(claimed) do
  redis.call('ZADD', due_key, lease_until, id)
end
return claimed
