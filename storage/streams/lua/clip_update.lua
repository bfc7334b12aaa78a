-- The owner marks a clip clipped / unclipped or edits its note (review).
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the session's clips hash
--   ARGV[6]  the performer's user id (the owner only)
--   ARGV[7]  the clip id
--   ARGV[8]  '1' clipped, '0' unclipped, '' unchanged
--   ARGV[9]  '1' when ARGV[10] is the new note
--   ARGV[10] the new note (validated by the caller)
--   ARGV[11] event type (clip_updated)
-- Returns {offset, clip JSON, audience session id ('' when none)} or {false, code}:
-- session_not_found, forbidden, not_found.
local session_key = KEYS[3]
local clips_key = KEYS[4]
local performer = ARGV[6]
local clip_id = ARGV[7]
local clipped = ARGV[8]
local has_note = ARGV[9] == '1'
local note = ARGV[10]
local event_type = ARGV[11]

local found = redis.call('HMGET', session_key, 'kind', 'owner_id', 'clipped_count', 'audience_id')
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
local clipped_count = tonumber(found[3] or '0')
if clipped ~= '' then
  local now_clipped = clipped == '1'
  if now_clipped ~= clip.clipped then
    clipped_count = clipped_count + (now_clipped and 1 or -1)
  end
  clip.clipped = now_clipped
end
if has_note then
  clip.note = note
end
local clip_json = cjson.encode(clip)
redis.call('HSET', clips_key, clip_id, clip_json)
redis.call('HSET', session_key, 'clipped_count', clipped_count, 'updated_at', now_ms)
local data = {clip_id = clip_id, segment_index = clip.segment_index, clipped = clip.clipped, note = clip.note,
  clipped_count = clipped_count}
return {append_event(event_type, cjson.encode(data)), clip_json, found[4] or ''}
