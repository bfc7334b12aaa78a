-- The owner removes every clip one viewer stored (moderation), in one step with its event. The
-- submission ids stay known, so a late retry of a removed click does not bring it back.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the session's clips hash
--   ARGV[6]  the performer's user id (the owner only)
--   ARGV[7]  the viewer whose clips go
--   ARGV[8]  event type (clips_cleared)
-- Returns {offset, removed count, audience session id ('' when none), viewer tag} or
-- {false, code}: session_not_found, forbidden.
local session_key = KEYS[3]
local clips_key = KEYS[4]
local performer = ARGV[6]
local viewer = ARGV[7]
local event_type = ARGV[8]

local found = redis.call('HMGET', session_key, 'kind', 'owner_id', 'clip_count', 'clipped_count', 'tag_salt', 'audience_id')
if found[1] ~= 'stream' then
  return {false, 'session_not_found'}
end
if found[2] ~= performer then
  return {false, 'forbidden'}
end
-- Events reach every subscriber: they name the viewer by tag (as submit.lua makes it), never by id.
local viewer_tag = string.sub(redis.sha1hex(found[5] .. '|' .. viewer), 1, 12)
-- Bounded by the session's clip cap (10,000 by default): a few ms at most.
local removed = {}
local clipped_removed = 0
local all = redis.call('HGETALL', clips_key)
for i = 1, #all, 2 do
  local clip = cjson.decode(all[i + 1])
  if clip.submitted_by == viewer then
    removed[#removed + 1] = all[i]
    if clip.clipped then
      clipped_removed = clipped_removed + 1
    end
  end
end
local count = tonumber(found[3] or '0') - #removed
local clipped_count = tonumber(found[4] or '0') - clipped_removed
for start = 1, #removed, 1000 do
  redis.call('HDEL', clips_key, unpack(removed, start, math.min(start + 999, #removed)))
end
redis.call('HSET', session_key, 'clip_count', count, 'clipped_count', clipped_count, 'updated_at', now_ms)
local data = {viewer_tag = viewer_tag, clip_ids = removed, count = count, clipped_count = clipped_count}
if #removed == 0 then
  data.clip_ids = cjson.decode('[]')
end
return {append_event(event_type, cjson.encode(data)), #removed, found[6] or '', viewer_tag}
