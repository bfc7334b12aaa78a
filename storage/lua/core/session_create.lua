-- Creates a session record and opens its log with a first event. The global and per-user
-- indexes are written by the caller in a separate step (other hash slots; see storage/sessions.py).
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   ARGV[6]  event type of the first event
--   ARGV[7]  event data, JSON object (the new record as clients see it)
--   ARGV[8..] field, value pairs of the record
-- Returns {offset} or {false, 'conflict'} when the id is taken.
local session_key = KEYS[3]
local event_type = ARGV[6]
local data_json = ARGV[7]

if redis.call('EXISTS', session_key) == 1 then
  return {false, 'conflict'}
end
redis.call('HSET', session_key, unpack(ARGV, 8))
return {append_event(event_type, data_json)}
