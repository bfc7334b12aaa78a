-- The owner blocks or unblocks a viewer: a blocked viewer's new clips are refused (submit.lua).
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the session's blocked viewers set
--   ARGV[6]  the performer's user id (the owner only)
--   ARGV[7]  the viewer
--   ARGV[8]  '1' block, '0' unblock
--   ARGV[9]  event type (viewer_blocked)
--   ARGV[10] most viewers the set may hold
-- Returns {offset, '1' when it changed anything else '0', audience session id ('' when none),
-- viewer tag} or {false, code[, detail]}:
-- session_not_found, forbidden, limit_reached (detail: the cap). An unchanged block appends no
-- event (a retry is free, a cap reached or not).
local session_key = KEYS[3]
local blocked_key = KEYS[4]
local performer = ARGV[6]
local viewer = ARGV[7]
local block = ARGV[8] == '1'
local event_type = ARGV[9]
local max_blocked = tonumber(ARGV[10])

local found = redis.call('HMGET', session_key, 'kind', 'owner_id', 'tag_salt', 'audience_id')
if found[1] ~= 'stream' then
  return {false, 'session_not_found'}
end
if found[2] ~= performer then
  return {false, 'forbidden'}
end
-- Events reach every subscriber: they name the viewer by tag (as submit.lua makes it), never by id.
local viewer_tag = string.sub(redis.sha1hex(found[3] .. '|' .. viewer), 1, 12)
local changed
if block then
  -- Any user id may be named (a viewer to come included), so the set is capped: a stream owner's
  -- loop of made-up ids grew it without end (and its listing, read whole, with it).
  if redis.call('SISMEMBER', blocked_key, viewer) == 0 and redis.call('SCARD', blocked_key) >= max_blocked then
    return {false, 'limit_reached', tostring(max_blocked)}
  end
  changed = redis.call('SADD', blocked_key, viewer)
else
  changed = redis.call('SREM', blocked_key, viewer)
end
if changed == 0 then
  return {0, '0', found[4] or '', viewer_tag}
end
local data = cjson.encode({viewer_tag = viewer_tag, blocked = block})
return {append_event(event_type, data), '1', found[4] or '', viewer_tag}
