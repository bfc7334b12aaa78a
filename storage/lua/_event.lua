-- Shared prologue of every script that changes a session: appends events to the session's
-- log and publishes them, in the same atomic step as the state change, so state and log
-- can never disagree. Prepended to each operation script by storage/scripts.py.
--
-- Common KEYS and ARGV (every operation script takes these first):
--   KEYS[1]  the session's log stream            (sh:{id}:log)
--   KEYS[2]  the session's log metadata hash     (sh:{id}:logmeta: epoch, offset)
--   ARGV[1]  the session's pub/sub channel
--   ARGV[2]  the session id (validated UUID, safe to splice into JSON)
--   ARGV[3]  a fresh epoch, used only when the log has to start anew
--   ARGV[4]  now, unix ms
--   ARGV[5]  approximate maximum length of the log stream
-- Operation-specific KEYS start at KEYS[3], ARGV at ARGV[6].

local function append_event(etype, data_json)
  local epoch = redis.call('HGET', KEYS[2], 'epoch')
  local offset = 0
  if (not epoch) or redis.call('EXISTS', KEYS[1]) == 0 then
    -- The log (or its metadata) is gone: start a new epoch so that every client holding an
    -- offset of the old one is told its history cannot be recovered.
    epoch = ARGV[3]
    redis.call('DEL', KEYS[1])
  else
    offset = tonumber(redis.call('HGET', KEYS[2], 'offset') or '0')
  end
  offset = offset + 1
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', offset)
  local event = '{"session_id":"' .. ARGV[2] .. '","epoch":"' .. epoch .. '","offset":' ..
    offset .. ',"type":"' .. etype .. '","ts":' .. ARGV[4] .. ',"data":' .. data_json .. '}'
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], offset .. '-0', 'e', event)
  redis.call('PUBLISH', ARGV[1], event)
  return offset
end
