-- Creates a session record and opens its log with a first `session_update` event.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the global sorted set of sessions (score: created_at ms)
--   ARGV[6]  event data, JSON object (the new record as clients see it)
--   ARGV[7..] field, value pairs of the record
-- Returns {offset} or {false, 'conflict'} when the id is taken.
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {false, 'conflict'}
end
redis.call('HSET', KEYS[3], unpack(ARGV, 7))
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[2])
return {append_event('session_update', ARGV[6])}
