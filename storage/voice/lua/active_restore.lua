-- Gives a /done's taken session back as the user's active session when its close failed (a
-- refusal such as rate_limited, an error): only while no session is active, so a /start or an
-- activation made meanwhile is never undone. Announced as active_set.lua announces.
--   KEYS[1]  the user's active-session pointer (a string holding a session id)
--   KEYS[2]  the pointer's change count (an integer, never reset)
--   ARGV[1]  the session id the /done took
--   ARGV[2]  the user's active-session channel
-- Returns 1 when given back, 0 otherwise.
local pointer_key = KEYS[1]
local seq_key = KEYS[2]
local session_id = ARGV[1]
local channel = ARGV[2]

if redis.call('EXISTS', pointer_key) == 1 then
  return 0
end
redis.call('SET', pointer_key, session_id)
local seq = redis.call('INCR', seq_key)
redis.call('PUBLISH', channel, cjson.encode({session_id = session_id, seq = seq}))
return 1
