-- The owner deletes a clip. Its submission id stays known, so a late retry of the same click
-- is answered as a duplicate and does not bring the clip back.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the session's clips hash
--   KEYS[5]  the session's own index (submit.lua; its entry goes with the clip)
--   ARGV[6]  the performer's user id (the owner only)
--   ARGV[7]  the clip id
--   ARGV[8]  event type (clip_removed)
-- Returns {offset, clip JSON, audience session id ('' when none)} or {false, code}:
-- session_not_found, forbidden, not_found.
local session_key = KEYS[3]
local clips_key = KEYS[4]
local performer = ARGV[6]
local clip_id = ARGV[7]
local event_type = ARGV[8]

local found = redis.call('HMGET', session_key, 'kind', 'owner_id', 'clip_count', 'clipped_count', 'audience_id',
  'tag_salt')
if found[1] ~= 'stream' then
  return {false, 'session_not_found'}
end
if found[2] ~= performer then
  return {false, 'forbidden'}
end
local stored = redis.call('HGET', clips_key, clip_id)
if not stored then
  return {false, 'not_found'}
end
local clip = cjson.decode(stored)
local count = tonumber(found[3] or '0') - 1
local clipped_count = tonumber(found[4] or '0') - (clip.clipped and 1 or 0)
redis.call('HDEL', clips_key, clip_id)
-- The entry as submit.lua (or own_index_build.lua, for a clip from before the index) made it.
local tag = clip.viewer_tag or string.sub(redis.sha1hex((found[6] or '') .. '|' .. tostring(clip.submitted_by)), 1, 12)
redis.call('ZREM', KEYS[5], tag .. ':' .. string.format('%015d', tonumber(clip.seq) or 0) .. ':' .. clip_id)
redis.call('HSET', session_key, 'clip_count', count, 'clipped_count', clipped_count, 'updated_at', now_ms)
local data = {clip_id = clip_id, segment_index = clip.segment_index, count = count, clipped_count = clipped_count}
return {append_event(event_type, cjson.encode(data)), stored, found[5] or ''}
