-- Puts a dead letter back on the job stream, once: the entry leaves the dead-letter list and its
-- job (attempts 0, no last error) is queued with the same id, atomically. A press repeated after
-- its answer was lost finds the entry gone and the mark this step left: it is answered as the
-- first was and queues nothing. The entry is looked for first: a job retried, run and buried
-- again under its id is a new dead letter, which a new press retries.
--   KEYS[1]  the dead-letter list (job JSON, newest first)
--   KEYS[2]  the job stream
--   KEYS[3]  the mark of how the dead letter was settled (a string with a TTL)
--   ARGV[1]  the entry's exact text in the list ('' when the caller did not find it)
--   ARGV[2]  the job JSON to queue
--   ARGV[3]  approximate maximum length of the job stream
--   ARGV[4]  how long the mark is kept, ms
-- Returns {1, 0} when queued now, {1, 1} when it had been;
-- {false, 'conflict', 'discarded'} when it was discarded; {false, 'not_found'} otherwise.
local dead_key = KEYS[1]
local stream_key = KEYS[2]
local mark_key = KEYS[3]
local entry = ARGV[1]
local job = ARGV[2]
local stream_maxlen = ARGV[3]
local mark_ms = ARGV[4]

if entry ~= '' and redis.call('LREM', dead_key, 1, entry) > 0 then
  redis.call('XADD', stream_key, 'MAXLEN', '~', stream_maxlen, '*', 'job', job)
  redis.call('SET', mark_key, 'retried', 'PX', mark_ms)
  return {1, 0}
end
local mark = redis.call('GET', mark_key)
if mark == 'retried' then
  return {1, 1}
end
if mark == 'discarded' then
  return {false, 'conflict', 'discarded'}
end
return {false, 'not_found'}
