-- Clears a user's active session only if it still points at the given session
-- (compare-and-delete, so a concurrent /start or activate is never undone).
--   KEYS[1]  the user's active-session key
--   ARGV[1]  the session id that was closed
-- Returns 1 when cleared, 0 otherwise.
local active_key = KEYS[1]
local closed_id = ARGV[1]

if redis.call('GET', active_key) == closed_id then
  redis.call('DEL', active_key)
  return 1
end
return 0
