-- Reserves bytes of one payer's daily upload quota before an upload's body is read: the check
-- and the charge in one step, so concurrent uploads of one payer can never take more than the
-- quota between them (a check before the body and a charge after let each pass the check).
--   KEYS[1]  the payer's counter of bytes stored (and reserved) in the current quota day
--   ARGV[1]  the bytes wanted (the most the upload can store)
--   ARGV[2]  the fewest bytes that will do (less left: refused)
--   ARGV[3]  the quota, in bytes
--   ARGV[4]  the quota day, in seconds (the counter expires that long after it began)
-- Returns {granted}: up to ARGV[1] bytes, now counted; or {false, 'quota_exceeded', left}.
local counter = KEYS[1]
local wanted = tonumber(ARGV[1])
local least = tonumber(ARGV[2])
local quota = tonumber(ARGV[3])
local window_s = tonumber(ARGV[4])

local left = quota - tonumber(redis.call('GET', counter) or '0')
local granted = math.min(wanted, left)
if granted < least or granted <= 0 then
  return {false, 'quota_exceeded', math.max(left, 0)}
end
redis.call('INCRBY', counter, granted)
-- A counter begun now (no expiry yet) lasts the quota day; a running one keeps its end.
if redis.call('TTL', counter) < 0 then
  redis.call('EXPIRE', counter, window_s)
end
return {granted}
