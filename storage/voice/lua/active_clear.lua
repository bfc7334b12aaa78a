-- Clears the user's active session only if it still is the given session (compare-and-delete,
-- so a concurrent /start or activate is never undone), and announces the change to every client
-- of the user in the same atomic step (see active_set.lua).
--   KEYS[1]  the user's active-session pointer (a string holding a session id)
--   KEYS[2]  the pointer's change count (an integer, never reset)
--   ARGV[1]  the session id that was closed or deleted
--   ARGV[2]  the user's active-session channel
-- Returns 1 when cleared, 0 otherwise.
local pointer_key = KEYS[1]
local seq_key = KEYS[2]
local closed_id = ARGV[1]
local channel = ARGV[2]

if redis.call('GET', pointer_key) ~= closed_id then
  return 0
end
redis.call('DEL', pointer_key)
local seq = redis.call('INCR', seq_key)
redis.call('PUBLISH', channel, cjson.encode({session_id = cjson.null, seq = seq}))
return 1
