-- Ends a user's material-routing lock (storage/voice/route_lock.py) only if it is still the
-- caller's: a holder that stalled past the lock's TTL must not end the lock another arrival took.
--   KEYS[1]  the user's routing lock (a string with a TTL holding its holder's token)
--   ARGV[1]  the caller's token
-- Returns 1 when ended, 0 otherwise.
local lock_key = KEYS[1]
local token = ARGV[1]

if redis.call('GET', lock_key) ~= token then
  return 0
end
redis.call('DEL', lock_key)
return 1
