-- Reads a listening history as of one log position: the record, the totals and the open
-- sessions, atomically with the log's epoch, offset and the id of the event there.
--   KEYS[1]  the history session hash
--   KEYS[2]  stats hash
--   KEYS[3]  open hash (device -> session id)
--   KEYS[4]  records hash
--   KEYS[5]  the log metadata hash
-- Returns {record field/value list, stats field/value list, open records (JSON list), epoch, offset,
-- last event id}.
local history_key = KEYS[1]
local stats_key = KEYS[2]
local open_key = KEYS[3]
local records_key = KEYS[4]
local log_meta_key = KEYS[5]

local open = {}
for _, id in ipairs(redis.call('HVALS', open_key)) do
  local raw = redis.call('HGET', records_key, id)
  if raw then
    open[#open + 1] = raw
  end
end
local position = redis.call('HMGET', log_meta_key, 'epoch', 'offset', 'id')
return {
  redis.call('HGETALL', history_key),
  redis.call('HGETALL', stats_key),
  open,
  position[1] or '',
  position[2] or '0',
  position[3] or '',
}
