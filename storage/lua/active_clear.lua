-- Clears a user's active session only if it still points at the given session
-- (compare-and-delete, so a concurrent /start or activate is never undone).
--   KEYS[1]  the user's active-session key
--   ARGV[1]  the session id that was closed
-- Returns 1 when cleared, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
