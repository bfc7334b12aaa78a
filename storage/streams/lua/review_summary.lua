-- What a stream session's review shows first: each segment's clip count and the newest clips
-- on its timeline (the live feed), from the review index (review_sync.lua keeps it), with the
-- log position they reflect. Bounded: segments are at most MAX_SEGMENTS, the clips ARGV[1].
--   KEYS[1]  the review index (sorted set: clip id, score segment * 2^40 + offset ms)
--   KEYS[2]  the session's clips hash (clip id -> clip JSON)
--   KEYS[3]  the review index's position hash (epoch, offset)
--   ARGV[1]  how many of the last clips on the timeline to answer
--   ARGV[2..]  the segments' indexes
-- Returns {counts (one per segment given), last clips' JSON (last first), total, epoch, offset}.
local index_key = KEYS[1]
local clips_key = KEYS[2]
local index_meta_key = KEYS[3]
local last_count = tonumber(ARGV[1])

local SEGMENT_SPAN = 1099511627776 -- 2^40 ms per segment, as review_sync.lua
local counts = {}
for i = 2, #ARGV do
  local low = tonumber(ARGV[i]) * SEGMENT_SPAN
  counts[#counts + 1] = redis.call('ZCOUNT', index_key, string.format('%.0f', low),
    '(' .. string.format('%.0f', low + SEGMENT_SPAN))
end
local last = {}
if last_count > 0 then
  local ids = redis.call('ZRANGE', index_key, 0, last_count - 1, 'REV')
  if #ids > 0 then
    for _, text in ipairs(redis.call('HMGET', clips_key, unpack(ids))) do
      if text then
        last[#last + 1] = text
      end
    end
  end
end
local at = redis.call('HMGET', index_meta_key, 'epoch', 'offset')
return {counts, last, redis.call('ZCARD', index_key), at[1] or '', at[2] or '0'}
