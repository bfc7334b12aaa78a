-- The owner removes every clip one viewer stored (moderation): one page of them per call, each
-- page in one step with its event. The viewer's clips are a range of the own index
-- (keys.stream_own_index), read a page at a time: a call costs its page, never the session's
-- clips (reading them all held Redis 1-4 s on a 200,000-clip stream). The caller calls again
-- from the returned cursor until the range is through; the range ends at the session's clip
-- seq when the clear began, so a clip the viewer stores meanwhile is not taken by it. The
-- submission ids stay known, so a late retry of a removed click does not bring it back.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the session's clips hash
--   KEYS[5]  the session's own index
--   ARGV[6]  the performer's user id (the owner only)
--   ARGV[7]  the viewer whose clips go
--   ARGV[8]  event type (clips_cleared)
--   ARGV[9]  the last index entry the previous call read ('' at the first call)
--   ARGV[10] the clip seq the clear reaches ('' at the first call: the session's clip seq now)
--   ARGV[11] most index entries read per call
--   ARGV[12] clips the earlier calls of this clear removed
-- Returns {offset (0: no event), removed count, audience session id ('' when none), viewer tag,
-- next cursor ('' when the range is through), the clip seq the clear reaches, '1' when the index
-- is whole else '0' (nothing done: the caller builds it, own_index_build.lua, and calls again)}
-- or {false, code}: session_not_found, forbidden. An event carries the ids its page removed; a
-- clear that removed nothing (a resend) still makes one, with none.
local session_key = KEYS[3]
local clips_key = KEYS[4]
local index_key = KEYS[5]
local performer = ARGV[6]
local viewer = ARGV[7]
local event_type = ARGV[8]
local after = ARGV[9]
local page = tonumber(ARGV[11])
local removed_before = tonumber(ARGV[12])

local found = redis.call('HMGET', session_key, 'kind', 'owner_id', 'clip_count', 'clipped_count', 'tag_salt',
  'audience_id', 'clip_seq')
if found[1] ~= 'stream' then
  return {false, 'session_not_found'}
end
if found[2] ~= performer then
  return {false, 'forbidden'}
end
-- Events reach every subscriber: they name the viewer by tag (as submit.lua makes it), never by id.
local viewer_tag = string.sub(redis.sha1hex(found[5] .. '|' .. viewer), 1, 12)
local upto = ARGV[10]
if upto == '' then
  upto = found[7] or '0'
end
if redis.call('ZCARD', index_key) ~= redis.call('HLEN', clips_key) then
  return {0, 0, found[6] or '', viewer_tag, after, upto, '0'}
end

local low = after == '' and ('[' .. viewer_tag .. ':') or ('(' .. after)
local high = '(' .. viewer_tag .. ':' .. string.format('%015d', tonumber(upto) + 1)
local entries = redis.call('ZRANGEBYLEX', index_key, low, high, 'LIMIT', 0, page)
local removed = {}
local clipped_removed = 0
if #entries > 0 then
  local ids = {}
  for i = 1, #entries do
    ids[i] = string.match(entries[i], '[^:]*$')
  end
  local texts = redis.call('HMGET', clips_key, unpack(ids))
  local gone = {}
  for i = 1, #texts do
    -- Another viewer's clip under the same tag (48 bits of a salted hash) stays.
    local clip = texts[i] and cjson.decode(texts[i])
    if clip and clip.submitted_by == viewer then
      removed[#removed + 1] = ids[i]
      gone[#gone + 1] = entries[i]
      if clip.clipped then
        clipped_removed = clipped_removed + 1
      end
    end
  end
  if #removed > 0 then
    redis.call('HDEL', clips_key, unpack(removed))
    redis.call('ZREM', index_key, unpack(gone))
  end
end
local next_cursor = ''
if #entries == page then
  next_cursor = entries[#entries]
end
local count = tonumber(found[3] or '0') - #removed
local clipped_count = tonumber(found[4] or '0') - clipped_removed
if #removed == 0 and (next_cursor ~= '' or removed_before > 0) then
  return {0, 0, found[6] or '', viewer_tag, next_cursor, upto, '1'}
end
redis.call('HSET', session_key, 'clip_count', count, 'clipped_count', clipped_count, 'updated_at', now_ms)
-- Written out: cjson writes an empty table as {}, and clip_ids is a list (also when empty).
local data = '{"viewer_tag":' .. cjson.encode(viewer_tag) .. ',"clip_ids":'
  .. (#removed > 0 and cjson.encode(removed) or '[]') .. ',"count":' .. string.format('%d', count)
  .. ',"clipped_count":' .. string.format('%d', clipped_count) .. '}'
return {append_event(event_type, data), #removed, found[6] or '', viewer_tag, next_cursor, upto, '1'}
