-- Applies one live editing operation to a pattern's stored state. Operations name their
-- target (a track id, a step index) and the value it should have, so two players doing the
-- same thing never cancel each other out; an operation on a track that is gone changes
-- nothing. Python validated the operation with the same limits as an HTTP state.
--
-- The state is kept split in the session hash (see storage/patterns/layout.py), so an op reads
-- and writes only what it changes and costs Redis the same at any state size: one field per
-- pattern-level value (`st:f:<name>`), per track its head without steps and locks
-- (`st:t:<id>`), its steps as a string of '0'/'1' (`st:s:<id>`) and its parameter locks in
-- chunks of 16 steps (`st:l:<id>:<chunk>`, a JSON array; absent while all null: a field per
-- lock took twice the state's memory), the track order (`st:order`, ids joined by ',') and the
-- size the state takes as compact JSON (`st:bytes`, kept by deltas, for the PUT limit). New
-- sessions and PUTs store the split form already; a state in the whole form (one JSON document
-- in `state`: stored before the split) is split here at its first op, once.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the session's players hash (player id -> JSON, with expires_at)
--   KEYS[5]  the clients' last applied ops (hash: client id -> '<seq>|<offset>'; bounded, expires)
--   KEYS[6]  this client's last applied op as an older node kept it (a string; read only)
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
--   ARGV[18] how long the clients' last seqs are remembered after the session's last op, ms
--   ARGV[19] most clients remembered (past it, one other client's entry is dropped)
--   ARGV[20] the sending client's id
--   ARGV[21] the id nodes of before per-user client ids knew it by ('' when the same)
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
local max_seen = tonumber(ARGV[19])
local client_id = ARGV[20]
local legacy_id = ARGV[21] or ''

local found = redis.call('HMGET', session_key, 'kind', 'immutable', 'st:bytes')
if found[1] ~= kind then
  return {false, 'session_not_found'}
end
if found[2] == '1' then
  return {false, 'forbidden'}
end

-- Idempotency by client and seq: a retry (a lost ack, a reconnect) of an op already applied is
-- answered as it was, never applied twice (a toggle would flip back).
local seen = redis.call('HGET', seen_key, client_id)
if not seen and legacy_id ~= '' then
  -- Applied by a node of before the ids were per user (a rolling upgrade; within the hour).
  seen = redis.call('HGET', seen_key, legacy_id)
end
if not seen then
  -- Applied by a node of before the hash (a rolling upgrade): its key lives out its hour.
  seen = redis.call('GET', KEYS[6])
end
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
  -- One hash per session, not a key per client: a loop of new connections (each a client)
  -- made a key each, 4,000 a second from one address for an hour. Past its bound the hash
  -- forgets another client (its retry of an op older than the drop would apply again).
  if redis.call('HSET', seen_key, client_id, ARGV[17] .. '|' .. offset) == 1
      and redis.call('HLEN', seen_key) > max_seen then
    -- Two distinct fields at random: at least one is another client's (the hash holds two or more).
    local picked = redis.call('HRANDFIELD', seen_key, 2)
    local other = picked[1] ~= client_id and picked[1] or picked[2]
    redis.call('HDEL', seen_key, other)
  end
  redis.call('PEXPIRE', seen_key, seen_ttl_ms)
  return {offset, redis.call('HGET', log_meta_key, 'epoch'), '0'}
end

if operation == 'name' then
  redis.call('HSET', session_key, 'name', value_json)
  return finish(data_json)
end

-- The size of the state as compact JSON, from its parts (storage/patterns/layout.py joins the
-- same parts): {"<name>":<value>,...,"tracks":[<track>,...]}, each track its head with
-- ,"steps":[...],"parameterLocks":[...] spliced in before the head's closing brace; the locks
-- are the track's lock chunks' arrays joined (a missing chunk: all null).
local CHUNK = 16

-- JSON as Python writes it (storage/patterns/layout.py): cjson escapes '/' as '\/', which made
-- a part with a slash (a track named "Kick/Snare") a byte longer each time a live op wrote it
-- again, and a state at the cap refused ops that changed nothing of its size (audit "verify47").
-- A '/' is only ever written escaped, and a '\' as '\\', so '\/' is always an escaped slash.
local function encode(value)
  return (string.gsub(cjson.encode(value), '\\/', '/'))
end

local function steps_bytes(bits)
  local n = #bits
  if n == 0 then
    return 0
  end
  local _, ones = string.gsub(bits, '1', '')
  return ones * 4 + (n - ones) * 5 + n - 1
end

-- Steps in chunk c (0-based) of a track of n steps.
local function chunk_steps(n, c)
  return math.min(CHUNK, n - c * CHUNK)
end

-- The JSON text of an all-null chunk of k steps (what a missing chunk field stands for).
local function null_chunk_len(k)
  return k * 4 + k + 1
end

-- Bytes the locks take inside "parameterLocks":[...]: each chunk's text less its brackets,
-- plus the commas between chunks.
local function locks_bytes(n, chunk_lens)
  local total, chunks = 0, math.ceil(n / CHUNK)
  for c = 0, chunks - 1 do
    total = total + (chunk_lens[c] or null_chunk_len(chunk_steps(n, c))) - 2
  end
  if chunks > 1 then
    total = total + chunks - 1
  end
  return total
end

local function track_bytes(head_len, bits, chunk_lens)
  return head_len + 31 + steps_bytes(bits) + locks_bytes(#bits, chunk_lens)
end

-- A decoded track in its stored parts: head JSON, steps string, lock chunks (chunk index ->
-- JSON array, only chunks with a lock) and its size as compact JSON.
local function track_parts(track)
  local steps = track.steps or {}
  local locks = track.parameterLocks or {}
  local head = {}
  for k, v in pairs(track) do
    if k ~= 'steps' and k ~= 'parameterLocks' then
      head[k] = v
    end
  end
  head = encode(head)
  local bits = {}
  for s = 1, #steps do
    if steps[s] == true then
      bits[s] = '1'
    else
      bits[s] = '0'
    end
  end
  bits = table.concat(bits)
  local chunks, chunk_lens = {}, {}
  for c = 0, math.ceil(#bits / CHUNK) - 1 do
    local items, any = {}, false
    for i = 1, chunk_steps(#bits, c) do
      local lock = locks[c * CHUNK + i]
      if type(lock) == 'table' then
        items[i] = lock
        any = true
      else
        items[i] = cjson.null
      end
    end
    if any then
      chunks[c] = encode(items)
      chunk_lens[c] = #chunks[c]
    end
  end
  return head, bits, chunks, track_bytes(#head, bits, chunk_lens)
end

local function write_track(id, head, bits, chunks)
  redis.call('HSET', session_key, 'st:t:' .. id, head, 'st:s:' .. id, bits)
  for c, text in pairs(chunks) do
    redis.call('HSET', session_key, 'st:l:' .. id .. ':' .. c, text)
  end
end

-- The whole form split, once: decodes the document this one time.
local bytes = tonumber(found[3])
if not bytes then
  local state = cjson.decode(redis.call('HGET', session_key, 'state') or '{}')
  bytes = 13
  for name, value in pairs(state) do
    if name ~= 'tracks' then
      local encoded = encode(value)
      redis.call('HSET', session_key, 'st:f:' .. name, encoded)
      bytes = bytes + #name + 4 + #encoded
    end
  end
  local ids = {}
  -- An empty track list decodes as an object: ipairs sees no track either way.
  for _, track in ipairs(state.tracks or {}) do
    ids[#ids + 1] = track.id
    local head, bits, chunks, size = track_parts(track)
    write_track(track.id, head, bits, chunks)
    bytes = bytes + size
  end
  if #ids > 1 then
    bytes = bytes + #ids - 1
  end
  redis.call('HSET', session_key, 'st:order', table.concat(ids, ','), 'st:bytes', bytes)
  redis.call('HDEL', session_key, 'state')
end

-- Every change below checks the size it leads to before writing anything: live edits may not
-- grow the state past what a PUT may store (the session must stay savable).
local function commit(delta, data)
  if delta ~= 0 then
    redis.call('HINCRBY', session_key, 'st:bytes', delta)
  end
  return finish(data)
end

if operation == 'field' then
  local name = 'st:f:' .. target
  local old = redis.call('HGET', session_key, name)
  local delta = #target + 4 + #value_json
  if old then
    delta = #value_json - #old
  end
  if delta > 0 and bytes + delta > max_state_bytes then
    return {false, 'payload_too_large'}
  end
  redis.call('HSET', session_key, name, value_json)
  return commit(delta, data_json)
end

if operation == 'add_track' then
  local track = cjson.decode(value_json)
  if redis.call('HEXISTS', session_key, 'st:t:' .. track.id) == 1 then
    return {false, 'conflict'}
  end
  local order = redis.call('HGET', session_key, 'st:order') or ''
  local count = 0
  if order ~= '' then
    local _, commas = string.gsub(order, ',', '')
    count = commas + 1
  end
  if count >= max_tracks then
    return {false, 'limit_reached'}
  end
  local head, bits, chunks, delta = track_parts(track)
  if count > 0 then
    delta = delta + 1
  end
  if delta > 0 and bytes + delta > max_state_bytes then
    return {false, 'payload_too_large'}
  end
  write_track(track.id, head, bits, chunks)
  if order == '' then
    order = track.id
  else
    order = order .. ',' .. track.id
  end
  redis.call('HSET', session_key, 'st:order', order)
  return commit(delta, data_json)
end

local head_json = redis.call('HGET', session_key, 'st:t:' .. track_id)
if not head_json then
  return {false, 'not_found'}
end
local steps_key = 'st:s:' .. track_id
local chunk_prefix = 'st:l:' .. track_id .. ':'

if operation == 'delete_track' or operation == 'clear_track' then
  local bits = redis.call('HGET', session_key, steps_key) or ''
  local names = {}
  for c = 0, math.ceil(#bits / CHUNK) - 1 do
    names[#names + 1] = chunk_prefix .. c
  end
  local chunk_lens, stored = {}, {}
  if #names > 0 then
    local texts = redis.call('HMGET', session_key, unpack(names))
    for c = 0, #names - 1 do
      if texts[c + 1] then
        chunk_lens[c] = #texts[c + 1]
        stored[#stored + 1] = names[c + 1]
      end
    end
  end
  local size = track_bytes(#head_json, bits, chunk_lens)
  if #stored > 0 then
    redis.call('HDEL', session_key, unpack(stored))
  end
  if operation == 'clear_track' then
    local cleared = string.rep('0', #bits)
    redis.call('HSET', session_key, steps_key, cleared)
    return commit(track_bytes(#head_json, cleared, {}) - size, data_json)
  end
  redis.call('HDEL', session_key, 'st:t:' .. track_id, steps_key)
  local ids = {}
  for id in string.gmatch(redis.call('HGET', session_key, 'st:order') or '', '[^,]+') do
    if id ~= track_id then
      ids[#ids + 1] = id
    end
  end
  if #ids > 0 then
    size = size + 1
  end
  redis.call('HSET', session_key, 'st:order', table.concat(ids, ','))
  return commit(-size, data_json)
end

if operation == 'track_field' then
  local head = cjson.decode(head_json)
  head[target] = cjson.decode(value_json)
  local encoded = encode(head)
  local delta = #encoded - #head_json
  if delta > 0 and bytes + delta > max_state_bytes then
    return {false, 'payload_too_large'}
  end
  redis.call('HSET', session_key, 'st:t:' .. track_id, encoded)
  return commit(delta, data_json)
end

local step = tonumber(target) + 1
local bits = redis.call('HGET', session_key, steps_key) or ''
if step > #bits then
  return {false, 'invalid_payload'}
end

if operation == 'step' or operation == 'toggle_step' then
  local was = string.sub(bits, step, step)
  local now = '0'
  if operation == 'toggle_step' then
    if was == '0' then
      now = '1'
    end
    -- The outcome is only known here: add it to the event as "on".
    data_json = string.sub(data_json, 1, -2) .. ',"on":' .. tostring(now == '1') .. '}'
  elseif value_json == 'true' then
    now = '1'
  end
  if now == was then
    return commit(0, data_json)
  end
  -- "true" is a byte shorter than "false"
  local delta = 1
  if now == '1' then
    delta = -1
  end
  if delta > 0 and bytes + delta > max_state_bytes then
    return {false, 'payload_too_large'}
  end
  redis.call('HSET', session_key, steps_key, string.sub(bits, 1, step - 1) .. now .. string.sub(bits, step + 1))
  return commit(delta, data_json)
end

if operation == 'lock' then
  -- One chunk of at most 16 locks decoded and encoded again, whatever the state's size.
  local c = math.floor((step - 1) / CHUNK)
  local k = chunk_steps(#bits, c)
  local name = chunk_prefix .. c
  local old = redis.call('HGET', session_key, name)
  local items = {}
  if old then
    items = cjson.decode(old)
  else
    for i = 1, k do
      items[i] = cjson.null
    end
  end
  items[step - c * CHUNK] = cjson.decode(value_json)
  local any = false
  for i = 1, k do
    if items[i] ~= cjson.null then
      any = true
    end
  end
  local encoded = encode(items)
  local delta = #encoded - (old and #old or null_chunk_len(k))
  if delta > 0 and bytes + delta > max_state_bytes then
    return {false, 'payload_too_large'}
  end
  if any then
    redis.call('HSET', session_key, name, encoded)
  else
    redis.call('HDEL', session_key, name)
  end
  return commit(delta, data_json)
end

return {false, 'invalid_payload'}
