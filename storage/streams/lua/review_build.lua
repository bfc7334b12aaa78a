-- One step of building a stream session's review index from its clips, in pages: the first
-- call (ARGV[1] = 'start') takes the log position the build starts from; each call adds a page
-- of the clips hash (HSCAN, the hash itself: a COPY of 200,000 clips held Redis ~0.1-0.2 s for
-- every session on it) to the index being built; the last one renames it into place with that
-- position, so the index then catches up from the log (review_sync.lua). Each call is a few ms
-- of Redis.
-- A clip added or removed while the pages are read may be indexed or not: its event, after
-- the position, is applied by the catch-up (ZADD and ZREM change nothing when done twice). A
-- clip held the whole build is indexed, unless the hash moved to another node between two
-- calls (its slot resharded, its master failed over): each Redis seeds its hash function, so
-- the cursor carried over skips fields there (829 of 5,000 in a probe). The catch-up's count
-- check (the index against the clips, once caught up) then asks for another build.
--   KEYS[1]  the session's clips hash (clip id -> clip JSON)
--   KEYS[2]  the index being built (keys.stream_review_build)
--   KEYS[3]  the review index
--   KEYS[4]  the review index's position hash (epoch, offset, id of the event there)
--   KEYS[5]  the session's log metadata hash (epoch, offset, id)
--   ARGV[1]  'start', or the HSCAN cursor of the clips to go on from
--   ARGV[2]  clips indexed per call
--   ARGV[3]  ms the index being built and the position hash live if the caller goes away
--   ARGV[4]  the position the build started from, 'epoch offset id' ('' at the start)
-- Returns {next cursor ('0': done and installed), position 'epoch offset id'}.
local clips_key = KEYS[1]
local build_key = KEYS[2]
local index_key = KEYS[3]
local index_meta_key = KEYS[4]
local log_meta_key = KEYS[5]
local cursor = ARGV[1]
local page = tonumber(ARGV[2])
local ttl_ms = ARGV[3]
local position = ARGV[4]

local SEGMENT_SPAN = 1099511627776 -- 2^40 ms per segment, as review_sync.lua
if cursor == 'start' then
  local meta = redis.call('HMGET', log_meta_key, 'epoch', 'offset', 'id')
  position = (meta[1] or '') .. ' ' .. (meta[2] or '0') .. ' ' .. (meta[3] or '')
  redis.call('DEL', build_key)
  cursor = '0'
end
local scanned = redis.call('HSCAN', clips_key, cursor, 'COUNT', page)
local found = scanned[2]
for i = 2, #found, 2 do
  local clip = cjson.decode(found[i])
  redis.call('ZADD', build_key, string.format('%.0f', clip.segment_index * SEGMENT_SPAN + clip.offset_ms), clip.clip_id)
end
if #found > 0 then
  redis.call('PEXPIRE', build_key, ttl_ms)
end
if scanned[1] ~= '0' then
  return {scanned[1], position}
end
if redis.call('EXISTS', build_key) == 1 then
  redis.call('RENAME', build_key, index_key)
else
  redis.call('DEL', index_key)
end
-- (A position without the id: one a build of the previous release began.)
local epoch, offset, read_id = string.match(position, '^(%S*) (%d+) ?(%S*)$')
redis.call('HSET', index_meta_key, 'epoch', epoch, 'offset', offset, 'id', read_id)
-- The build's lifetime, as the index renamed with it: the read that catches it up gives both a
-- day (review_sync.lua); without it, a build whose process went before that read, or raced the
-- stream's deletion, left the position hash for good.
redis.call('PEXPIRE', index_meta_key, ttl_ms)
return {'0', position}
