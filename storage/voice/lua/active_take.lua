-- Takes the user's active session for one /done: clears the pointer and answers the session it
-- named, in one step, so that of two /done sent at once only one finds a session to close (the
-- other finds none: reading the pointer and then clearing it let both read it, and both closed
-- the session and queued its post-processing). A press with a request id keeps what it took:
-- its resend (the first try cut off after this step, or its answer lost) closes that same
-- session, as the same press, not whatever is active by then, and clears nothing.
--   KEYS[1]  the user's active-session pointer (a string holding a session id)
--   KEYS[2]  the pointer's change count (an integer, never reset)
--   KEYS[3]  the session this press took (a string with a TTL; unused without a request id)
--   ARGV[1]  the user's active-session channel
--   ARGV[2]  the press's request id ('' when none was given)
--   ARGV[3]  how long a press's taken session is kept, ms
-- Returns {session_id, 1} when taken now, {session_id, 0} when this press took it before, or
-- {'', 0} when no session is active.
local pointer_key = KEYS[1]
local seq_key = KEYS[2]
local press_key = KEYS[3]
local channel = ARGV[1]
local request_id = ARGV[2]
local press_ttl_ms = ARGV[3]

if request_id ~= '' then
  local taken = redis.call('GET', press_key)
  if taken then
    return {taken, 0}
  end
end
local session_id = redis.call('GET', pointer_key)
if not session_id then
  return {'', 0}
end
redis.call('DEL', pointer_key)
local seq = redis.call('INCR', seq_key)
redis.call('PUBLISH', channel, cjson.encode({session_id = cjson.null, seq = seq}))
if request_id ~= '' then
  redis.call('SET', press_key, session_id, 'PX', press_ttl_ms)
end
return {session_id, 1}
