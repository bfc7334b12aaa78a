-- Replaces a pattern's state and/or name (HTTP PUT and PATCH), checking the caller's
-- If-Match against the log position in the same step: a REST write that has not seen the
-- latest live operation is refused instead of silently clobbering it. The ETag names the
-- offset of the last change of state or name (`state_offset`); a client that has seen any
-- later offset of the log (presence, cursors, remix counts in between) has seen that state too.
-- A replacement that leaves out a field only live edits set (effects, scale, loopRegion: the
-- origin app's own client saves {tracks, tempo, swing, version}) keeps the stored value, read
-- and written back in this same step so no live edit between can be lost, and the logged
-- state is the merged one.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   ARGV[6]  the kind ('pattern')
--   ARGV[7]  expected epoch; '' when the caller sent no If-Match (last write wins)
--   ARGV[8]  expected offset
--   ARGV[9]  '1' when the state is replaced ('0' keeps it)
--   ARGV[10] '1' when the name is set
--   ARGV[11] the new name ('' for none)
--   ARGV[12] event type (pattern_state)
--   ARGV[13] event data, JSON, up to where the kept fields go: the logged state's members,
--            its closing braces left out ('{"by":"u","state":{"tracks":[...],...')
--   ARGV[14] the rest of the event data ('}}'; when no state is replaced ARGV[13] is the whole
--            data and this is '')
--   ARGV[15] the state fields kept from the stored state when it has them, joined by ','
--            ('' for none); the new state's fields (ARGV[16..]) must be in the split form then
--   ARGV[16..] the new state's fields, name, value pairs (storage/patterns/layout.py's split
--            form; or the whole form, 'state' and its JSON); none when the state is kept
-- Returns {offset, epoch} or {false, code}: session_not_found, forbidden (published),
-- precondition_failed (If-Match is stale).
local session_key = KEYS[3]
local kind = ARGV[6]
local expected_epoch = ARGV[7]
local expected_offset = tonumber(ARGV[8])
local state_set = ARGV[9]
local name_set = ARGV[10]
local name = ARGV[11]
local event_type = ARGV[12]
local data_head = ARGV[13]
local data_tail = ARGV[14]
local kept_names = ARGV[15]
local FIRST_FIELD = 16

local found = redis.call('HMGET', session_key, 'kind', 'immutable', 'state_offset')
if found[1] ~= kind then
  return {false, 'session_not_found'}
end
if found[2] == '1' then
  return {false, 'forbidden'}
end
if expected_epoch ~= '' then
  local meta = redis.call('HMGET', log_meta_key, 'epoch', 'offset')
  local log_offset = tonumber(meta[2] or '0')
  -- A session from before state_offset existed: only its latest offset is known to be current.
  local state_offset = tonumber(found[3] or log_offset)
  if meta[1] ~= expected_epoch or expected_offset < state_offset or expected_offset > log_offset then
    return {false, 'precondition_failed'}
  end
end
-- The kept fields' stored JSON texts, in either form the state is stored in (layout.py): read
-- before the old state's fields go.
local function stored_values()
  local names, values = {}, {}
  for field in string.gmatch(kept_names, '[^,]+') do
    names[#names + 1] = field
  end
  if #names == 0 then
    return names, values
  end
  local whole = redis.call('HGET', session_key, 'state')
  if whole then
    -- Only a pattern stored before the split (never converted by a live op) is decoded here,
    -- once; a PUT writes the whole state anyway.
    local document = cjson.decode(whole)
    for i, field in ipairs(names) do
      if document[field] ~= nil then
        values[i] = cjson.encode(document[field])
      end
    end
    return names, values
  end
  local split = {}
  for i, field in ipairs(names) do
    split[i] = 'st:f:' .. field
  end
  local stored = redis.call('HMGET', session_key, unpack(split))
  for i = 1, #names do
    if stored[i] then
      values[i] = stored[i]
    end
  end
  return names, values
end

local data_json = data_head .. data_tail
if state_set == '1' then
  local kept, kept_values = stored_values()
  -- A whole-state write replaces every field of the state, in whichever form it was stored
  -- (storage/patterns/layout.py), by the fields given, written in the split form by the caller
  -- so that the next live op converts nothing.
  local old = {'state'}
  for _, field in ipairs(redis.call('HKEYS', session_key)) do
    if string.sub(field, 1, 3) == 'st:' then
      old[#old + 1] = field
    end
  end
  for i = 1, #old, 500 do
    redis.call('HDEL', session_key, unpack(old, i, math.min(i + 499, #old)))
  end
  for i = FIRST_FIELD, #ARGV, 500 do
    redis.call('HSET', session_key, unpack(ARGV, i, math.min(i + 499, #ARGV)))
  end
  -- The kept fields back, each a member of the state as compact JSON: ,"<name>":<value>.
  local members, added_bytes = {}, 0
  for i, field in ipairs(kept) do
    local value = kept_values[i]
    if value then
      redis.call('HSET', session_key, 'st:f:' .. field, value)
      members[#members + 1] = '"' .. field .. '":' .. value
      added_bytes = added_bytes + #field + 4 + #value
    end
  end
  if #members > 0 then
    redis.call('HINCRBY', session_key, 'st:bytes', added_bytes)
    local comma = ','
    if string.sub(data_head, -1) == '{' then
      comma = ''
    end
    data_json = data_head .. comma .. table.concat(members, ',') .. data_tail
  end
end
if name_set == '1' then
  redis.call('HSET', session_key, 'name', name)
end
redis.call('HSET', session_key, 'updated_at', now_ms, 'last_accessed_at', now_ms)
local offset = append_event(event_type, data_json)
redis.call('HSET', session_key, 'state_offset', offset)
return {offset, redis.call('HGET', log_meta_key, 'epoch')}
