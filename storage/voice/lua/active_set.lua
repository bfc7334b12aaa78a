-- Makes a session the user's active session (seed 002 `active-session`) and announces it to
-- every client of the user, in one atomic step: the pointer, its change count and the
-- announcement never disagree, so a client that missed the announcement (it was disconnected)
-- reads the same pointer and count at its next connection (server/active_feed.py).
--   KEYS[1]  the user's active-session pointer (a string holding a session id)
--   KEYS[2]  the pointer's change count (an integer, never reset)
--   ARGV[1]  the session id to make active
--   ARGV[2]  the user's active-session channel
-- Setting the session that is active already changes and announces nothing.
-- Returns the change count after the call.
local pointer_key = KEYS[1]
local seq_key = KEYS[2]
local session_id = ARGV[1]
local channel = ARGV[2]

if redis.call('GET', pointer_key) == session_id then
  return tonumber(redis.call('GET', seq_key) or '0')
end
redis.call('SET', pointer_key, session_id)
local seq = redis.call('INCR', seq_key)
redis.call('PUBLISH', channel, cjson.encode({session_id = session_id, seq = seq}))
return seq
