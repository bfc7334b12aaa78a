-- Applies one live editing operation to a pattern's stored state. Operations name their
-- target (a track id, a step index) and the value it should have, so two players doing the
-- same thing never cancel each other out; an operation on a track that is gone changes
-- nothing. Python validated the operation with the same limits as an HTTP state.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   ARGV[6]  the kind ('pattern')
--   ARGV[7]  operation: field | track_field | step | toggle_step | lock | add_track |
--            delete_track | clear_track | name
--   ARGV[8]  track id ('' for session-wide operations)
--   ARGV[9]  field name (field, track_field) or 0-based step index (step, toggle_step, lock)
--   ARGV[10] value as JSON (field, track_field, step, lock, add_track); the raw name (name)
--   ARGV[11] most tracks a pattern holds
--   ARGV[12] event type (pattern_op)
--   ARGV[13] event data, JSON object
-- Returns {offset, epoch} or {false, code}: session_not_found, forbidden (published),
-- not_found (no such track), conflict (track id taken), limit_reached (too many tracks).
local session_key = KEYS[3]
local kind = ARGV[6]
local operation = ARGV[7]
local track_id = ARGV[8]
local target = ARGV[9]
local value_json = ARGV[10]
local max_tracks = tonumber(ARGV[11])
local event_type = ARGV[12]
local data_json = ARGV[13]

local found = redis.call('HMGET', session_key, 'kind', 'immutable', 'state')
if found[1] ~= kind then
  return {false, 'session_not_found'}
end
if found[2] == '1' then
  return {false, 'forbidden'}
end

local function finish(data)
  redis.call('HSET', session_key, 'updated_at', now_ms, 'last_accessed_at', now_ms)
  local offset = append_event(event_type, data)
  return {offset, redis.call('HGET', log_meta_key, 'epoch')}
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
  redis.call('HSET', session_key, 'state', cjson.encode(state))
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
