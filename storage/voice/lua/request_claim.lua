-- Claims one client-chosen request id for a voice action that queues a job
-- (post_process_session, create_tasks_from_chunks): the first press stores its answer, a resend
-- of it gets that answer back, so it queues no second job. One step: two resends racing each
-- other cannot both claim it.
--   KEYS[1]  the press's stored answer (a string with a TTL)
--   ARGV[1]  this press's answer (JSON), kept when the id is new
--   ARGV[2]  how long it is kept, ms
-- Returns {1, ''} when the id was new (claimed now), {0, stored answer} for a resend.
local stored = redis.call('GET', KEYS[1])
if stored then
  return {0, stored}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, ''}
