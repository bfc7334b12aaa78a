-- Gives back reserved quota bytes an upload did not store (a refused or cut upload, a
-- duplicate, a file smaller than its reservation).
--   KEYS[1]  the payer's counter of bytes stored (and reserved) in the current quota day
--   ARGV[1]  the bytes to give back
-- Returns the counter after it (0 when it has expired meanwhile: a new day owes nothing back).
local counter = KEYS[1]
local bytes = tonumber(ARGV[1])

if redis.call('EXISTS', counter) == 0 then
  return 0
end
local used = redis.call('DECRBY', counter, bytes)
if used < 0 then
  -- The day turned and a new counter began meanwhile: it does not owe the old day's bytes.
  redis.call('SET', counter, 0, 'KEEPTTL')
  return 0
end
return used
