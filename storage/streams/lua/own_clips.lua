-- One viewer's own clips in a stream session, newest first, as they are now: the owner's edits
-- applied, deleted and cleared clips gone. Reads only. submit.lua keeps the ids of each
-- viewer's clips beside their count (c:<user> and u:<user> in the counts hash), so this reads at
-- most the viewer's clips, never the session's (a raid holds thousands). Clips stored before
-- that index existed are found by their submitter instead: when the index holds fewer ids than
-- the count, every clip of the session is looked at (bounded by the session's clip cap).
--   KEYS[1]  the session hash
--   KEYS[2]  the session's clips hash (clip id -> clip JSON)
--   KEYS[3]  the session's clip counts hash (u:<user> -> clips stored, c:<user> -> their ids)
--   KEYS[4]  the session's blocked viewers set
--   ARGV[1]  the viewer's user id
--   ARGV[2]  most clips to answer (the newest)
-- Returns {viewer tag, '1' when the owner blocked the viewer else '0', clip JSON ...} (clips
-- newest first), or {false, 'session_not_found'}. The tag is the one the viewer's clips and the
-- audience session's events name them by (as submit.lua makes it), known before any clip.
local session_key = KEYS[1]
local clips_key = KEYS[2]
local counts_key = KEYS[3]
local viewer = ARGV[1]
local limit = tonumber(ARGV[2])

local session = redis.call('HMGET', session_key, 'kind', 'tag_salt')
if session[1] ~= 'stream' then
  return {false, 'session_not_found'}
end
local viewer_tag = string.sub(redis.sha1hex((session[2] or '') .. '|' .. viewer), 1, 12)
local blocked = tostring(redis.call('SISMEMBER', KEYS[4], viewer))

local counted = redis.call('HMGET', counts_key, 'u:' .. viewer, 'c:' .. viewer)
local ids = {}
for id in string.gmatch(counted[2] or '', '%S+') do
  ids[#ids + 1] = id
end

local found = {viewer_tag, blocked}
if #ids >= tonumber(counted[1] or '0') then
  for i = #ids, 1, -1 do
    local clip = redis.call('HGET', clips_key, ids[i])
    if clip then
      found[#found + 1] = clip
      if #found >= limit + 2 then
        break
      end
    end
  end
  return found
end

local mine = {}
local all = redis.call('HVALS', clips_key)
for i = 1, #all do
  local clip = cjson.decode(all[i])
  if clip.submitted_by == viewer then
    mine[#mine + 1] = {clip.seq, all[i]}
  end
end
table.sort(mine, function(a, b) return a[1] > b[1] end)
for i = 1, math.min(limit, #mine) do
  found[i + 2] = mine[i][2]
end
return found
