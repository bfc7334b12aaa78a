-- Clears a per-user pointer to a session (the active voice session, the listening history)
-- only if it still points at the given session (compare-and-delete, so a concurrent /start,
-- activate or first use is never undone).
--   KEYS[1]  the user's pointer key (a string holding a session id)
--   ARGV[1]  the session id that was closed or deleted
-- Returns 1 when cleared, 0 otherwise.
local pointer_key = KEYS[1]
local closed_id = ARGV[1]

if redis.call('GET', pointer_key) == closed_id then
  redis.call('DEL', pointer_key)
  return 1
end
return 0
