-- One step of building a stream session's review index from a copy of its clips: the first
-- call (ARGV[1] = 'start') copies the clips hash as it is now with the log position it
-- reflects; each next call adds a page of the copy (HSCAN) to the index being built; the last
-- one renames it into place with that position, so the index then catches up from the log
-- (review_sync.lua). Each call is a few ms of Redis: a 200,000-clip index is built in pages,
-- never in one step that would hold every session on this Redis.
--   KEYS[1]  the session's clips hash (clip id -> clip JSON)
--   KEYS[2]  the copy of the clips being indexed (keys.stream_clips_copy)
--   KEYS[3]  the index being built (keys.stream_review_build)
--   KEYS[4]  the review index
--   KEYS[5]  the review index's position hash (epoch, offset, id of the event there)
--   KEYS[6]  the session's log metadata hash (epoch, offset, id)
--   ARGV[1]  'start', 'again' (the copy scanned anew from its start), or the HSCAN cursor of
--            the copy to go on from
--   ARGV[2]  clips indexed per call
--   ARGV[3]  ms the copy, the index being built and the position hash live if the caller goes away
--   ARGV[4]  the position the copy reflects, 'epoch offset id' ('' at the start)
-- Returns {next cursor ('0': done and installed; 'again': call again; 'lost': the copy is gone,
-- nothing installed), position 'epoch offset id'}.
-- On a cluster the copy may move to another node between two calls (its slot resharded, its
-- master failed over). Each Redis seeds its hash function, so there the copy's fields lie in
-- other buckets and the cursor carried over skips some (829 of 5,000 in a probe): a scan that
-- ends with fewer clips indexed than the copy holds starts again ('again'; ZADD keeps those
-- already indexed once). A copy gone after the first call (a failover to a replica that never
-- got it, or expired) leaves a build that cannot be trusted: 'lost'.
local clips_key = KEYS[1]
local copy_key = KEYS[2]
local build_key = KEYS[3]
local index_key = KEYS[4]
local index_meta_key = KEYS[5]
local log_meta_key = KEYS[6]
local cursor = ARGV[1]
local page = tonumber(ARGV[2])
local ttl_ms = ARGV[3]
local position = ARGV[4]

local SEGMENT_SPAN = 1099511627776 -- 2^40 ms per segment, as review_sync.lua
if cursor == 'start' then
  local meta = redis.call('HMGET', log_meta_key, 'epoch', 'offset', 'id')
  position = (meta[1] or '') .. ' ' .. (meta[2] or '0') .. ' ' .. (meta[3] or '')
  redis.call('DEL', build_key)
  if redis.call('EXISTS', clips_key) == 1 then
    redis.call('COPY', clips_key, copy_key, 'REPLACE')
    redis.call('PEXPIRE', copy_key, ttl_ms)
  end
  cursor = '0'
elseif redis.call('EXISTS', copy_key) == 0 then
  -- Every call after the start has a copy to scan: only a copy of no clips ends in the first.
  redis.call('DEL', build_key)
  return {'lost', position}
elseif cursor == 'again' then
  cursor = '0'
end
local scanned = redis.call('HSCAN', copy_key, cursor, 'COUNT', page)
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
if redis.call('ZCARD', build_key) < redis.call('HLEN', copy_key) then
  return {'again', position}
end
-- UNLINK: freeing a 200,000-field copy in the call took ~0.1 s of Redis.
redis.call('UNLINK', copy_key)
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
