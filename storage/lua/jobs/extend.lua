-- Heartbeat of a running job: resets its pending entry's idle time, so XAUTOCLAIM (which hands
-- entries idle longer than the visibility timeout to another worker) leaves it alone.
--   KEYS[1]  the job stream
--   ARGV[1]  the consumer group
--   ARGV[2]  the consumer (worker) that runs the job
--   ARGV[3]  the job's stream entry id
-- Returns 1 when the claim was extended, 0 when the entry is no longer pending for this consumer
-- (acknowledged, or already reclaimed by another worker: then it must not be taken back).
local stream_key = KEYS[1]
local group = ARGV[1]
local consumer = ARGV[2]
local entry_id = ARGV[3]

local pending = redis.call('XPENDING', stream_key, group, entry_id, entry_id, 1, consumer)
if #pending == 0 then
  return 0
end
-- JUSTID: the delivery counter stays as it is (a heartbeat is not a new delivery).
redis.call('XCLAIM', stream_key, group, consumer, 0, entry_id, 'JUSTID')
return 1
