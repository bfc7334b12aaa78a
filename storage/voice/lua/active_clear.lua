-- Clears the user's active session only if it still is the given session (compare-and-delete,
-- so a concurrent /start or activate is never undone), and announces the change to every client
-- of the user in the same atomic step (see active_set.lua).
--   KEYS[1]  the user's active-session pointer (a string holding a session id)
--   KEYS[2]  the pointer's change count (an integer, never reset)
--   ARGV[1]  the session id that was closed or deleted
--   ARGV[2]  the user's active-session channel
--   ARGV[3]  "" or a change count: clear only if the pointer has not changed since it (a Done's
--            job must not undo the person choosing the session again after the Done)
-- Returns {1 when cleared else 0, the change count after the call}.
local pointer_key = KEYS[1]
local seq_key = KEYS[2]
local closed_id = ARGV[1]
local channel = ARGV[2]
local since = ARGV[3]

local seq = tonumber(redis.call('GET', seq_key) or '0')
if redis.call('GET', pointer_key) ~= closed_id or (since ~= '' and tonumber(since) ~= seq) then
  return {0, seq}
end
redis.call('DEL', pointer_key)
seq = redis.call('INCR', seq_key)
redis.call('PUBLISH', channel, cjson.encode({session_id = cjson.null, seq = seq}))
return {1, seq}
