-- Empties the dead-letter list when it holds the count the operator confirmed (they saw that
-- many; one buried since would go unseen). An empty list is answered as emptied: a discard of all
-- repeated after its answer was lost finds nothing left, which is what was asked.
--   KEYS[1]  the dead-letter list
--   ARGV[1]  the count the operator confirmed
-- Returns the number of entries dropped; {false, 'conflict', <count now>} when it differs.
local dead_key = KEYS[1]
local confirmed = tonumber(ARGV[1])

local count = redis.call('LLEN', dead_key)
if count == 0 then
  return 0
end
if count ~= confirmed then
  return {false, 'conflict', tostring(count)}
end
redis.call('DEL', dead_key)
return count
