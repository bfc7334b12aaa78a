-- Brings a stream session's review index (clip ids in review order) up to its log: the clips
-- added, removed and cleared since the position the index reflects, at most ARGV[1] events a
-- call. The index is kept by its readers, not by the clip scripts: the click's step (the raid's
-- hot path) stays as it is, and a dashboard that pages a 200,000-clip stream reads a page by
-- rank instead of every clip.
--   KEYS[1]  the review index (sorted set: clip id, score segment * 2^40 + offset ms)
--   KEYS[2]  the review index's position hash (epoch, offset, id of the event read there)
--   KEYS[3]  the session's log stream (entry id '<offset>-0', field 'e': the event's JSON)
--   KEYS[4]  the session's log metadata hash (epoch, offset, id)
--   KEYS[5]  the session's clips hash (clip id -> clip JSON)
--   ARGV[1]  most events applied in this call
--   ARGV[2]  ms the index and its position live unread (a stream nobody reviews keeps no index:
--            it costs about a third of its clips' memory; a read builds it again)
-- Returns {'synced' | 'more' | 'rebuild', epoch, offset}: 'synced' when the index reflects the log's
-- position (epoch, offset); 'more' when events are left to apply (call again); 'rebuild' when
-- it cannot catch up (no index, another epoch, the log trimmed past it, the log no longer
-- holding the event the index read last at its offset, or its count differs from the clips
-- hash: clips written without an event).
-- A Redis that lost writes (an OS crash under appendfsync everysec, a failover to a lagging
-- replica) can come back with a log behind the index, or hand the index's offsets out again
-- for other events in the same epoch: the index then reflects a history the clips no longer
-- hold, with the same count as often as not (a lost click and a lost deletion). The index's
-- position names the id of the event it read last (ids are unique, storage/events.py), which
-- the log must still hold at that offset.
local index_key = KEYS[1]
local index_meta_key = KEYS[2]
local log_key = KEYS[3]
local log_meta_key = KEYS[4]
local clips_key = KEYS[5]
local most = tonumber(ARGV[1])
local idle_ms = ARGV[2]

local SEGMENT_SPAN = 1099511627776 -- 2^40 ms (34 years) of offsets per segment
local position = redis.call('HMGET', log_meta_key, 'epoch', 'offset', 'id')
local epoch = position[1] or ''
local log_offset = tonumber(position[2] or '0')
local at = redis.call('HMGET', index_meta_key, 'epoch', 'offset', 'id')
if redis.call('EXISTS', index_key) == 0 and redis.call('HLEN', clips_key) > 0 then
  return {'rebuild', epoch, log_offset}
end
if (at[1] or '') ~= epoch then
  return {'rebuild', epoch, log_offset}
end
local from = tonumber(at[2] or '0')
local read_id = at[3] or ''
if from > log_offset then
  return {'rebuild', epoch, log_offset}
end
if from == log_offset and from > 0 and read_id ~= (position[3] or '') then
  return {'rebuild', epoch, log_offset}
end
if from < log_offset then
  -- From the entry the index read last (checked, then skipped), when it has read one.
  local first = tostring(from + 1) .. '-0'
  local start = first
  if from > 0 then
    start = tostring(from) .. '-0'
  end
  local entries = redis.call('XRANGE', log_key, start, '+', 'COUNT', most + 1)
  if from > 0 then
    if #entries == 0 or entries[1][1] ~= start or cjson.decode(entries[1][2][2]).id ~= read_id then
      return {'rebuild', epoch, log_offset}
    end
    table.remove(entries, 1)
  end
  if #entries == 0 or entries[1][1] ~= first then
    return {'rebuild', epoch, log_offset}
  end
  local last = from
  for _, entry in ipairs(entries) do
    local event = cjson.decode(entry[2][2])
    local data = event.data
    if event.type == 'clip_added' then
      -- '%.0f': a score written by Lua's tostring keeps 14 digits, and segment 500 needs 15.
      local score = string.format('%.0f', data.segment_index * SEGMENT_SPAN + data.offset_ms)
      redis.call('ZADD', index_key, score, data.clip_id)
    elseif event.type == 'clip_removed' then
      redis.call('ZREM', index_key, data.clip_id)
    elseif event.type == 'clips_cleared' then
      -- In runs: unpack() of a whole viewer's clips could pass Lua's stack limit (8000).
      local ids = data.clip_ids
      for start = 1, #ids, 500 do
        redis.call('ZREM', index_key, unpack(ids, start, math.min(start + 499, #ids)))
      end
    end
    last = event.offset
    read_id = event.id
  end
  redis.call('HSET', index_meta_key, 'epoch', epoch, 'offset', tostring(last), 'id', read_id)
  if last < log_offset then
    return {'more', epoch, last}
  end
end
if redis.call('ZCARD', index_key) ~= redis.call('HLEN', clips_key) then
  return {'rebuild', epoch, log_offset}
end
redis.call('PEXPIRE', index_key, idle_ms)
redis.call('PEXPIRE', index_meta_key, idle_ms)
return {'synced', epoch, log_offset}
