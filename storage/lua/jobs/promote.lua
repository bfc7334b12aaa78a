-- Moves retry jobs whose time has come from the delayed set back onto the job stream.
--   KEYS[1]  sorted set of delayed jobs (member: job JSON, score: due time ms)
--   KEYS[2]  the job stream
--   ARGV[1]  now, unix ms
--   ARGV[2]  how many jobs to move at most
--   ARGV[3]  approximate maximum length of the job stream
-- Returns the number of jobs moved.
local delayed_key = KEYS[1]
local stream_key = KEYS[2]
local now_ms = ARGV[1]
local batch = tonumber(ARGV[2])
local stream_maxlen = ARGV[3]

local due = redis.call('ZRANGEBYSCORE', delayed_key, '-inf', now_ms, 'LIMIT', 0, batch)
for _, job in ipairs(due) do
  redis.call('XADD', stream_key, 'MAXLEN', '~', stream_maxlen, '*', 'job', job)
  redis.call('ZREM', delayed_key, job)
end
return #due
