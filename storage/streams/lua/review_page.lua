-- One page of a stream session's review: the clips of one segment after a cursor, in review
-- order (offset, then clip id), read by rank from the review index (review_sync.lua keeps it):
-- a page costs the same on a 200,000-clip stream as on a small one.
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
local after_score = nil
local rank
if after_ms == '' then
  rank = redis.call('ZCOUNT', index_key, '-inf', '(' .. score_text(low))
else
  after_score = low + tonumber(after_ms)
  rank = redis.call('ZCOUNT', index_key, '-inf', '(' .. score_text(after_score))
end
-- Ranks from the cursor's score on: the clips at that very ms up to and including the cursor's
-- id are passed over (ties are ordered by id), then `limit` more, and one to know if any is left.
local ids, scores = {}, {}
local done = false
local chunk = limit + 16
while not done and #ids <= limit do
  local found = redis.call('ZRANGE', index_key, rank, rank + chunk - 1, 'WITHSCORES')
  if #found == 0 then
    break
  end
  for i = 1, #found, 2 do
    local member, score = found[i], tonumber(found[i + 1])
    if score >= high then
      done = true
      break
    end
    if not (after_score and score == after_score and member <= after_id) then
      ids[#ids + 1] = member
      scores[#scores + 1] = score
      if #ids > limit then
        break
      end
    end
  end
  rank = rank + chunk
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
