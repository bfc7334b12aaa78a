-- Queues a job unless a job of that id was queued already (within the marker's lifetime): a
-- resend of one press of Done, Process or Tasks queues its job again, by the id the press was
-- answered, so a first press whose node died between its step and its job still gets one, and
-- a press that queued it gets no second. JobQueue.enqueue_coalesced runs it with a mark the
-- worker drops as the job starts: no second job while the first waits.
--   KEYS[1]  the job stream
--   KEYS[2]  the marker of the job id, or of a coalesced job's name (a string with a TTL)
--   ARGV[1]  the job JSON
--   ARGV[2]  approximate maximum length of the job stream
--   ARGV[3]  how long the marker is kept, ms
-- Returns 1 when the job was queued now, 0 when it had been.
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) == false then
  return 0
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'job', ARGV[1])
return 1
