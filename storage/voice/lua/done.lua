-- Closes a voice session (seed 002 Done), checking access in the same step. Repeating it is
-- allowed: every call counts, except a resend of one press (same client-chosen request id),
-- which is answered as that press was, in this same step: two resends racing each other (a
-- lost ack, a page that resent on reconnect) can never both count.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the press's stored answer (a string with a TTL; unused without a request id)
--   ARGV[6]  the performer's user id
--   ARGV[7]  the performer's read scope: 'all', 'own' or 'none'
--   ARGV[8]  '1' when the performer has the update permission
--   ARGV[9]  event type of the record change (session_update)
--   ARGV[10] event type of the status change (session_status)
--   ARGV[11] the client's request id ('' when none was given)
--   ARGV[12] the job id this press queues (kept with its answer)
--   ARGV[13] how long a press's answer is kept, ms
-- Returns {offset, done_count, previous_status, job_id, 0} for a close, {0, done_count,
-- 'closed', job_id, 1} for a resend of a press already answered (its done_count and job_id),
-- or {false, code}: session_not_found, forbidden.
local session_key = KEYS[3]
local request_key = KEYS[4]
local performer = ARGV[6]
local read_scope = ARGV[7]
local may_update = ARGV[8]
local update_type = ARGV[9]
local status_type = ARGV[10]
local request_id = ARGV[11]
local job_id = ARGV[12]
local request_ttl_ms = ARGV[13]

-- Access first: a resend is answered only while its sender may still close the session.
local refused = check_owner_access(session_key, 'voice', performer, read_scope, may_update)
if refused then
  return {false, refused}
end
if request_id ~= '' then
  local stored = redis.call('GET', request_key)
  if stored then
    local answer = cjson.decode(stored)
    return {0, answer.done_count, 'closed', answer.job_id, 1}
  end
end
local previous = redis.call('HGET', session_key, 'status')
local done_count = redis.call('HINCRBY', session_key, 'done_count', 1)
-- When it was closed: a Done pressed again on a closed session (post-processing run again) is
-- counted, and leaves that time as it was.
local closed_at = now_ms
if previous == 'closed' then
  closed_at = tonumber(redis.call('HGET', session_key, 'closed_at')) or now_ms
end
redis.call('HSET', session_key, 'status', 'closed', 'is_active', '0', 'closed_at', closed_at,
  'updated_at', now_ms)
local offset = append_event(update_type, cjson.encode({is_active = false, done_count = done_count,
  closed_at = closed_at, updated_at = now_ms}))
if previous ~= 'closed' then
  offset = append_event(status_type, cjson.encode({status = 'closed', previous = previous}))
end
if request_id ~= '' then
  redis.call('SET', request_key, cjson.encode({done_count = done_count, job_id = job_id}), 'PX',
    request_ttl_ms)
end
return {offset, done_count, previous, job_id, 0}
