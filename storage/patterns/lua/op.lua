-- Applies one live editing operation to a pattern's stored state. Operations name their
-- target (a track id, a step index) and the value it should have, so two players doing the
-- same thing never cancel each other out; an operation on a track that is gone changes
-- nothing. Python validated the operation with the same limits as an HTTP state.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the session's players hash (player id -> JSON, with expires_at)
--   KEYS[5]  the sending client's last applied op ('<seq>|<offset>'; expires)
--   ARGV[6]  the kind ('pattern')
--   ARGV[7]  operation: field | track_field | step | toggle_step | lock | add_track |
--            delete_track | clear_track | name
--   ARGV[8]  track id ('' for session-wide operations)
--   ARGV[9]  field name (field, track_field) or 0-based step index (step, toggle_step, lock)
--   ARGV[10] value as JSON (field, track_field, step, lock, add_track); the raw name (name)
--   ARGV[11] most tracks a pattern holds
--   ARGV[12] event type (pattern_op)
--   ARGV[13] event data, JSON object
--   ARGV[14] the sender's player id (its connection's id)
--   ARGV[15] most players a session holds: when that many are present, only they may edit
--   ARGV[16] most bytes the stored state may take (the HTTP PUT limit)
--   ARGV[17] the op's seq (the client's sequence number)
--   ARGV[18] how long a client's last seq is remembered, ms
-- Returns {offset, epoch, duplicate ('1': a retry of an applied op, answered with its offset;
-- nothing applied)} or {false, code}: session_not_found, forbidden (published), session_full
-- (not a present player of a full session), not_found (no such track), conflict (track id
-- taken), limit_reached (too many tracks), payload_too_large (the state would outgrow PUT's
-- limit).
local session_key = KEYS[3]
local players_key = KEYS[4]
local seen_key = KEYS[5]
local kind = ARGV[6]
local operation = ARGV[7]
local track_id = ARGV[8]
local target = ARGV[9]
local value_json = ARGV[10]
local max_tracks = tonumber(ARGV[11])
local event_type = ARGV[12]
local data_json = ARGV[13]
local player_id = ARGV[14]
local max_players = tonumber(ARGV[15])
local max_state_bytes = tonumber(ARGV[16])
local seq = tonumber(ARGV[17])
local seen_ttl_ms = ARGV[18]

local found = redis.call('HMGET', session_key, 'kind', 'immutable', 'state')
if found[1] ~= kind then
  return {false, 'session_not_found'}
end
if found[2] == '1' then
  return {false, 'forbidden'}
end

-- Idempotency by client and seq: a retry (a lost ack, a reconnect) of an op already applied is
-- answered as it was, never applied twice (a toggle would flip back).
local seen = redis.call('GET', seen_key)
if seen then
  local bar = string.find(seen, '|', 1, true)
  if seq <= tonumber(string.sub(seen, 1, bar - 1)) then
    return {tonumber(string.sub(seen, bar + 1)), redis.call('HGET', log_meta_key, 'epoch'), '1'}
  end
end

-- A full session: the players present edit, the ones past the limit watch.
if redis.call('HLEN', players_key) >= max_players and not redis.call('HGET', players_key, player_id) then
  local present = 0
  local all = redis.call('HVALS', players_key)
  for i = 1, #all do
    if tonumber(cjson.decode(all[i]).expires_at) > now_ms then
      present = present + 1
    end
  end
  if present >= max_players then
    return {false, 'session_full'}
  end
end

local function finish(data)
  redis.call('HSET', session_key, 'updated_at', now_ms, 'last_accessed_at', now_ms)
  local offset = append_event(event_type, data)
  redis.call('HSET', session_key, 'state_offset', offset)
  redis.call('SET', seen_key, ARGV[17] .. '|' .. offset, 'PX', seen_ttl_ms)
  return {offset, redis.call('HGET', log_meta_key, 'epoch'), '0'}
end

if operation == 'name' then
  redis.call('HSET', session_key, 'name', value_json)
  return finish(data_json)
end

local state = cjson.decode(found[3])
local tracks = state.tracks

local function track_index(id)
  for i, track in ipairs(tracks) do
    if track.id == id then
      return i
    end
  end
  return nil
end

local function save(data)
  local encoded = cjson.encode(state)
  -- Live edits may not grow the state past what a PUT may store: the session must stay savable.
  if #encoded > max_state_bytes then
    return {false, 'payload_too_large'}
  end
  redis.call('HSET', session_key, 'state', encoded)
  return finish(data)
end

if operation == 'field' then
  state[target] = cjson.decode(value_json)
  return save(data_json)
end
if operation == 'add_track' then
  local track = cjson.decode(value_json)
  if track_index(track.id) then
    return {false, 'conflict'}
  end
  if #tracks >= max_tracks then
    return {false, 'limit_reached'}
  end
  -- An empty track list decodes as an object; start a fresh list (Python reads {} as []).
  if #tracks == 0 then
    tracks = {}
    state.tracks = tracks
  end
  tracks[#tracks + 1] = track
  return save(data_json)
end

local index = track_index(track_id)
if not index then
  return {false, 'not_found'}
end
local track = tracks[index]

if operation == 'delete_track' then
  table.remove(tracks, index)
elseif operation == 'clear_track' then
  for i = 1, #track.steps do
    track.steps[i] = false
    track.parameterLocks[i] = cjson.null
  end
elseif operation == 'track_field' then
  track[target] = cjson.decode(value_json)
elseif operation == 'step' then
  track.steps[tonumber(target) + 1] = cjson.decode(value_json)
elseif operation == 'toggle_step' then
  local step = tonumber(target) + 1
  local on = not track.steps[step]
  track.steps[step] = on
  -- The outcome is only known here: add it to the event as "on".
  data_json = string.sub(data_json, 1, -2) .. ',"on":' .. tostring(on) .. '}'
elseif operation == 'lock' then
  track.parameterLocks[tonumber(target) + 1] = cjson.decode(value_json)
else
  return {false, 'invalid_payload'}
end
return save(data_json)
