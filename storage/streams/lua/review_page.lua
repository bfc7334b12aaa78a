-- One page of a stream session's review: the clips of one segment after a cursor, in review
-- order (offset, then clip id), read by rank from the review index (review_sync.lua keeps it):
-- a page costs the same on a 200,000-clip stream as on a small one, and after 20,000 clips at
-- one ms as after none (the cursor's rank is looked up, not walked to).
--   KEYS[1]  the review index (sorted set: clip id, score segment * 2^40 + offset ms)
--   KEYS[2]  the session's clips hash (clip id -> clip JSON)
--   KEYS[3]  the review index's position hash (epoch, offset)
--   ARGV[1]  the segment's index
--   ARGV[2]  the cursor's offset ms ('' for the segment's start)
--   ARGV[3]  the cursor's clip id ('' for the segment's start)
--   ARGV[4]  most clips answered
-- Returns {clip JSON list, next cursor 'offset_ms clip_id' ('' at the segment's end), the
-- segment's clip count, epoch, offset}. A clip deleted since the index was read is left out;
-- the cursor still moves past it.
local index_key = KEYS[1]
local clips_key = KEYS[2]
local index_meta_key = KEYS[3]
local segment = tonumber(ARGV[1])
local after_ms = ARGV[2]
local after_id = ARGV[3]
local limit = tonumber(ARGV[4])

local SEGMENT_SPAN = 1099511627776 -- 2^40 ms per segment, as review_sync.lua
local function score_text(value)
  return string.format('%.0f', value)
end
local low = segment * SEGMENT_SPAN
local high = low + SEGMENT_SPAN
-- The rank of the first clip after the cursor, found without walking the clips at the cursor's
-- ms: a raid may put thousands in one ms, and a page's cost must not grow with those before it.
local rank
if after_ms == '' then
  rank = redis.call('ZCOUNT', index_key, '-inf', '(' .. score_text(low))
else
  local after_score = low + tonumber(after_ms)
  local at = redis.call('ZSCORE', index_key, after_id)
  if at and tonumber(at) == after_score then
    rank = redis.call('ZRANK', index_key, after_id) + 1
  else
    -- The cursor's clip is gone (deleted since): the first of its ms's ties (ordered by id)
    -- whose id is past it, by bisection over their ranks.
    rank = redis.call('ZCOUNT', index_key, '-inf', '(' .. score_text(after_score))
    local past = redis.call('ZCOUNT', index_key, '-inf', score_text(after_score))
    while rank < past do
      local middle = math.floor((rank + past) / 2)
      if redis.call('ZRANGE', index_key, middle, middle)[1] <= after_id then
        rank = middle + 1
      else
        past = middle
      end
    end
  end
end
-- `limit` clips from there, and one to know if any is left; the segment ends at `high`.
local ids, scores = {}, {}
local found = redis.call('ZRANGE', index_key, rank, rank + limit, 'WITHSCORES')
for i = 1, #found, 2 do
  local score = tonumber(found[i + 1])
  if score >= high then
    break
  end
  ids[#ids + 1] = found[i]
  scores[#scores + 1] = score
end
local cursor = ''
if #ids > limit then
  ids[#ids] = nil
  cursor = score_text(scores[limit] - low) .. ' ' .. ids[limit]
end
local clips = {}
if #ids > 0 then
  for _, text in ipairs(redis.call('HMGET', clips_key, unpack(ids))) do
    if text then
      clips[#clips + 1] = text
    end
  end
end
local count = redis.call('ZCOUNT', index_key, score_text(low), '(' .. score_text(high))
local at = redis.call('HMGET', index_meta_key, 'epoch', 'offset')
return {clips, cursor, count, at[1] or '', at[2] or '0'}
