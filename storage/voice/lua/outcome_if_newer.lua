-- Stores a processing job's digest on a session unless a job that read the session later has
-- stored its own: two runs of one session (a Done's, and the re-run for a late chunk) may finish
-- in either order, and the one that read fewer chunks must not replace the other's.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   ARGV[6]  event type
--   ARGV[7]  event data, JSON object
--   ARGV[8]  the field holding when the stored digest's job read the session (ms)
--   ARGV[9]  when this job read it (ms)
--   ARGV[10..] field, value pairs to set
-- Returns {offset}, {false, 'session_not_found'}, or {0, 'superseded'} when a later read's
-- digest is stored (nothing written).
local session_key = KEYS[3]
local event_type = ARGV[6]
local data_json = ARGV[7]
local read_field = ARGV[8]
local read_at = tonumber(ARGV[9])

if redis.call('EXISTS', session_key) == 0 then
  return {false, 'session_not_found'}
end
local stored = tonumber(redis.call('HGET', session_key, read_field) or '')
if stored ~= nil and stored > read_at then
  return {0, 'superseded'}
end
redis.call('HSET', session_key, read_field, ARGV[9], unpack(ARGV, 10))
return {append_event(event_type, data_json)}
