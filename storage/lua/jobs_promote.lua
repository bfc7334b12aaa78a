-- Moves retry jobs whose time has come from the delayed set back onto the job stream.
--   KEYS[1]  sorted set of delayed jobs (member: job JSON, score: due time ms)
--   KEYS[2]  the job stream
--   ARGV[1]  now, unix ms
--   ARGV[2]  how many jobs to move at most
--   ARGV[3]  approximate maximum length of the job stream
-- Returns the number of jobs moved.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, job in ipairs(due) do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'job', job)
  redis.call('ZREM', KEYS[1], job)
end
return #due
