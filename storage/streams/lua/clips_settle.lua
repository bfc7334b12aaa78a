-- The last step of a big session's clips read in HSCAN pages (StreamSessions.clips): one
-- moment's record, segments and log position, and as of that moment the clips that the log
-- says changed since the caller's scan began. The caller read the log up to ARGV[2] while it
-- scanned; the few events after it (committed since its last read) are read here, so what it
-- holds plus these answers is the session at the position answered. Reads only, and little:
-- at most ARGV[3] events and the clips the caller names (its pages hold the rest).
--   KEYS[1]  the session hash
--   KEYS[2]  the session's segment list
--   KEYS[3]  the session's log metadata hash
--   KEYS[4]  the session's clips hash (clip id -> clip JSON)
--   KEYS[5]  the session's log stream (entry ids <offset>-0, field e: the event JSON)
--   ARGV[1]  the epoch the caller read the log in
--   ARGV[2]  the offset up to which it read the log
--   ARGV[3]  most events read here (more: the caller reads them first)
--   ARGV[4..] ids of clips the caller read changes of after scanning them
-- Returns {'settled', session fields (flat), segments, {epoch, offset}, clip ids, their JSON (false:
-- gone), clips held} with ARGV[4..] and the ids the events after ARGV[2] name; {'behind'} when
-- more than ARGV[3] events came after ARGV[2]; {'again'} when the log cannot say what changed
-- (another epoch, trimmed past ARGV[2], or behind it): the caller scans again.
local meta = redis.call('HMGET', KEYS[3], 'epoch', 'offset')
local known = tonumber(ARGV[2])
local now = tonumber(meta[2] or '0')
if (meta[1] or '') ~= ARGV[1] or now < known then
  return {'again'}
end
if now - known > tonumber(ARGV[3]) then
  return {'behind'}
end
local ids = {}
local seen = {}
local function touch(id)
  if not seen[id] then
    seen[id] = true
    ids[#ids + 1] = id
  end
end
for i = 4, #ARGV do
  touch(ARGV[i])
end
if now > known then
  local entries = redis.call('XRANGE', KEYS[5], (known + 1) .. '-0', '+')
  if #entries ~= now - known then
    return {'again'}
  end
  for _, entry in ipairs(entries) do
    local event = cjson.decode(entry[2][2])
    local data = event.data
    if type(data) == 'table' then
      if type(data.clip_id) == 'string' then
        touch(data.clip_id)
      end
      if type(data.clip_ids) == 'table' then
        for _, id in ipairs(data.clip_ids) do
          touch(id)
        end
      end
    end
  end
end
local values = {}
for start = 1, #ids, 1000 do
  local got = redis.call('HMGET', KEYS[4], unpack(ids, start, math.min(start + 999, #ids)))
  for j = 1, #got do
    values[#values + 1] = got[j]
  end
end
return {'settled', redis.call('HGETALL', KEYS[1]), redis.call('LRANGE', KEYS[2], 0, -1), meta, ids, values,
  redis.call('HLEN', KEYS[4])}
