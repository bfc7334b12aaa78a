-- One viewer's own clips in a stream session, newest first, as they are now: the owner's edits
-- applied, deleted and cleared clips gone. Reads only, and only the viewer's newest entries of
-- the own index (keys.stream_own_index: the clip scripts keep it in their steps), never the
-- session's clips (a raid holds hundreds of thousands: reading them all held Redis ~1 s).
-- An index that does not hold as many entries as there are clips (a session from before it,
-- clips written by a node of the previous release) is answered as such: the caller builds it
-- in pages (own_index_build.lua) and asks again.
--   KEYS[1]  the session hash
--   KEYS[2]  the session's clips hash (clip id -> clip JSON)
--   KEYS[3]  the session's own index
--   KEYS[4]  the session's blocked viewers set
--   ARGV[1]  the viewer's user id
--   ARGV[2]  most clips to answer (the newest)
-- Returns {viewer tag, '1' when the owner blocked the viewer else '0', '1' when the index is
-- whole else '0' (and no clip), clip JSON ...} (clips newest first), or
-- {false, 'session_not_found'}. The tag is the one the viewer's clips and the audience
-- session's events name them by (as submit.lua makes it), known before any clip.
local session_key = KEYS[1]
local clips_key = KEYS[2]
local index_key = KEYS[3]
local viewer = ARGV[1]
local limit = tonumber(ARGV[2])

local session = redis.call('HMGET', session_key, 'kind', 'tag_salt')
if session[1] ~= 'stream' then
  return {false, 'session_not_found'}
end
local viewer_tag = string.sub(redis.sha1hex((session[2] or '') .. '|' .. viewer), 1, 12)
local blocked = tostring(redis.call('SISMEMBER', KEYS[4], viewer))
if redis.call('ZCARD', index_key) ~= redis.call('HLEN', clips_key) then
  return {viewer_tag, blocked, '0'}
end

-- The viewer's range, from its newest entry down. A tag is 48 bits of a salted hash: another
-- viewer's clip under it is skipped by its submitter (never answered), and the range read on.
local found = {viewer_tag, blocked, '1'}
local high = '(' .. viewer_tag .. ';'
local low = '[' .. viewer_tag .. ':'
while #found < limit + 3 do
  local entries = redis.call('ZREVRANGEBYLEX', index_key, high, low, 'LIMIT', 0, limit)
  if #entries == 0 then
    break
  end
  local ids = {}
  for i = 1, #entries do
    ids[i] = string.match(entries[i], '[^:]*$')
  end
  local texts = redis.call('HMGET', clips_key, unpack(ids))
  for i = 1, #texts do
    if texts[i] and cjson.decode(texts[i]).submitted_by == viewer and #found < limit + 3 then
      found[#found + 1] = texts[i]
    end
  end
  if #entries < limit then
    break
  end
  high = '(' .. entries[#entries]
end
return found
