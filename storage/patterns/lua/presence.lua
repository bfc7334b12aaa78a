-- Players present in a pattern session: join, heartbeat (with an optional cursor) and leave.
-- Presence goes through the log (see docs/PROTOCOL.md): a snapshot's player list and the
-- events after it are one ordered story. A player that vanished without leaving (closed
-- laptop, crashed node) expires: every presence call first drops the expired ones, each with
-- a logged leave, so the players still present see them go.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the session's players hash (player id -> JSON, with expires_at)
--   ARGV[6]  the kind ('pattern')
--   ARGV[7]  action: join | beat | leave
--   ARGV[8]  the player id (the connection's id)
--   ARGV[9]  join: the player, JSON {id, user, name, colour}; beat: the cursor JSON or ''
--   ARGV[10] the player's new expiry, unix ms (join, beat)
--   ARGV[11] most players a session holds (join)
--   ARGV[12] least ms between two logged cursor moves of one player (beat)
--   ARGV[13] event type (pattern_presence)
--   ARGV[14] join: the id this player had before a reconnect ('' for none); that entry is
--            dropped when it belongs to the same user, so a reconnect does not show twice
--   ARGV[15] join: most places one user holds (their tabs and devices), 0 for no limit
-- Returns {offset (0 when nothing was logged), players present} or {false, code}:
-- session_not_found, session_full (join; with the ms until a present player's place may free),
-- limit_reached (join; with the places one user may hold: one guest token's ten connections
-- took every place, and nobody else could join or edit), not_found (beat from a player not present).
local session_key = KEYS[3]
local players_key = KEYS[4]
local kind = ARGV[6]
local action = ARGV[7]
local player_id = ARGV[8]
local payload = ARGV[9]
local expires_at = tonumber(ARGV[10])
local max_players = tonumber(ARGV[11])
local cursor_interval_ms = tonumber(ARGV[12])
local event_type = ARGV[13]
local replaced_id = ARGV[14]
local places_per_user = tonumber(ARGV[15]) or 0
local joining_user = action == 'join' and cjson.decode(payload).user or nil

if redis.call('HGET', session_key, 'kind') ~= kind then
  return {false, 'session_not_found'}
end
-- What this logs is not the pattern's state: the state's offset (its ETag) stays where it was.
-- A session from before `state_offset` existed gets it pinned at the current offset first.
if redis.call('HEXISTS', session_key, 'state_offset') == 0 then
  redis.call('HSET', session_key, 'state_offset', redis.call('HGET', log_meta_key, 'offset') or 0)
end

local present = 0
local mine = 0 -- places the joining user holds through other connections
local soonest = nil -- the earliest expiry of a player present: when a place may free
local all = redis.call('HGETALL', players_key)
for i = 1, #all, 2 do
  local entry = cjson.decode(all[i + 1])
  local expiry = tonumber(entry.expires_at)
  if expiry <= now_ms then
    redis.call('HDEL', players_key, all[i])
    append_event(event_type, cjson.encode({action = 'leave', player_id = all[i], reason = 'timeout'}))
  else
    present = present + 1
    if joining_user ~= nil and entry.user == joining_user and all[i] ~= player_id and all[i] ~= replaced_id then
      mine = mine + 1
    end
    if soonest == nil or expiry < soonest then
      soonest = expiry
    end
  end
end

local stored = redis.call('HGET', players_key, player_id)

if action == 'leave' then
  if not stored then
    return {0, present}
  end
  redis.call('HDEL', players_key, player_id)
  return {append_event(event_type, cjson.encode({action = 'leave', player_id = player_id, reason = 'left'})), present - 1}
end

if action == 'join' then
  local player = cjson.decode(payload)
  if replaced_id ~= '' and replaced_id ~= player_id then
    local old = redis.call('HGET', players_key, replaced_id)
    if old and cjson.decode(old).user == player.user then
      redis.call('HDEL', players_key, replaced_id)
      append_event(event_type, cjson.encode({action = 'leave', player_id = replaced_id, reason = 'replaced'}))
      present = present - 1
    end
  end
  if not stored and places_per_user > 0 and mine >= places_per_user then
    return {false, 'limit_reached', tostring(places_per_user)}
  end
  if not stored and present >= max_players then
    -- With the ms until the first present player expires unless it beats again (a player of
    -- this person's own that went silent, say, when they come back without `replaces`).
    return {false, 'session_full', tostring(math.max((soonest or now_ms) - now_ms, 0))}
  end
  player.expires_at = expires_at
  player.cursor = cjson.null
  player.cursor_at = 0
  redis.call('HSET', players_key, player_id, cjson.encode(player))
  player.expires_at = nil
  player.cursor_at = nil
  if not stored then
    present = present + 1
  end
  return {append_event(event_type, cjson.encode({action = 'join', player = player})), present}
end

-- beat
if not stored then
  return {false, 'not_found'}
end
local player = cjson.decode(stored)
player.expires_at = expires_at
local offset = 0
if payload ~= '' and now_ms - tonumber(player.cursor_at) >= cursor_interval_ms then
  player.cursor = cjson.decode(payload)
  player.cursor_at = now_ms
  offset = append_event(event_type, cjson.encode({action = 'cursor', player_id = player_id, cursor = player.cursor}))
end
redis.call('HSET', players_key, player_id, cjson.encode(player))
return {offset, present}
