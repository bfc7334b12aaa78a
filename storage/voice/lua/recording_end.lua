-- Ends a recording nobody makes any more: the connection that held the session's recording
-- lease went away (`release`), or the lease ran out because nobody renewed it, e.g. its node
-- was killed (`sweep`). A session still recording, cutting or in its final upload moves to `paused`, announced as
-- the ordinary session_status event (with a `reason`).
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the session's recording lease (holder string with a TTL)
--   ARGV[6]  'release' (ARGV[7] must still hold the lease) or 'sweep' (the lease must be gone)
--   ARGV[7]  the holder that went (release), or '' (sweep)
--   ARGV[8]  event type (session_status)
-- Returns {offset, remaining_ms}: offset > 0 when the session was paused; remaining_ms > 0
-- when a sweep found the lease still held (look again then), else 0.
local session_key = KEYS[3]
local lease_key = KEYS[4]
local mode = ARGV[6]
local holder = ARGV[7]
local event_type = ARGV[8]

local current = redis.call('GET', lease_key)
if mode == 'release' then
  if current ~= holder then
    return {0, 0} -- the lease moved to another connection (or ended): not ours to end
  end
  redis.call('DEL', lease_key)
elseif current then
  return {0, math.max(redis.call('PTTL', lease_key), 1)}
end
local status = redis.call('HGET', session_key, 'status')
if status ~= 'recording' and status ~= 'cutting' and status ~= 'final_uploading' then
  return {0, 0}
end
-- `paused_by`: the server paused it, not a person: the recorder that comes back resumes it
-- (set_status.lua), where a person's Pause meanwhile stands.
redis.call('HSET', session_key, 'status', 'paused', 'updated_at', now_ms, 'paused_by', 'recorder_gone')
local data = cjson.encode({status = 'paused', previous = status, reason = 'recorder_gone'})
return {append_event(event_type, data), 0}
