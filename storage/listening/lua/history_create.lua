-- Creates a user's listening-history session record if it does not exist yet (idempotent: two
-- tabs asking at once both get the one record, and its log opens with one event).
--   KEYS[1..2], ARGV[1..5]  see core/_event.lua
--   KEYS[3]  the history session hash
--   ARGV[6]  event type of the first event
--   ARGV[7]  event data, JSON object (the record as clients see it)
--   ARGV[8..] field, value pairs of the record
-- Returns {offset} (0 when the record already existed) or {false, 'conflict'} when the id
-- belongs to another session.
local history_key = KEYS[3]
local event_type = ARGV[6]
local data_json = ARGV[7]

local kind = redis.call('HGET', history_key, 'kind')
if kind == 'listening' then
  return {0}
end
if kind then
  return {false, 'conflict'}
end
redis.call('HSET', history_key, unpack(ARGV, 8))
return {append_event(event_type, data_json)}
