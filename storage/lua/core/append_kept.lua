-- Appends one event that changes no state, as append.lua, and keeps its data in a field of the
-- session's record when the session is of the kind named: the latest of its sort, for a reader
-- that comes after the event (a voice session's last job step: a page opened while the job
-- runs). Another kind's record has fields of its own, and is never written.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash; the event is refused when the session does not exist
--   ARGV[6]  event type
--   ARGV[7]  event data, JSON object
--   ARGV[8]  the record's field that keeps it
--   ARGV[9]  what it keeps (the data with its time)
--   ARGV[10] the kind of session that keeps it
--   ARGV[11] a job id, or '': nothing is appended nor kept when the field keeps a step or outcome
--            of that job already (a job announced as queued once a worker has said more of it)
--   ARGV[12] unix ms, or '': but for a failure of that job kept before then (a dead letter an
--            operator queued again at that time, under the same id; its failure again after it
--            stays)
-- Returns {offset}, {0} when ARGV[11] left it out, or {false, 'session_not_found'}.
local session_key = KEYS[3]

if redis.call('EXISTS', session_key) == 0 then
  return {false, 'session_not_found'}
end
if redis.call('HGET', session_key, 'kind') == ARGV[10] then
  local job_id = ARGV[11]
  if job_id ~= nil and job_id ~= '' then
    local kept = redis.call('HGET', session_key, ARGV[8])
    local ok, said = pcall(cjson.decode, kept or 'null')
    if ok and type(said) == 'table' and said['job_id'] == job_id then
      local retried_at = tonumber(ARGV[12])
      local failed_before = retried_at and said['status'] == 'failed' and (tonumber(said['at']) or 0) < retried_at
      if not failed_before then
        return {0}
      end
    end
  end
  redis.call('HSET', session_key, ARGV[8], ARGV[9])
end
return {append_event(ARGV[6], ARGV[7])}
