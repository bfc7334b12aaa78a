-- Shared prologue of every script that changes a session: appends events to the session's
-- log and publishes them, in the same atomic step as the state change, so state and log
-- can never disagree. Prepended to each operation script by storage/scripts.py.
--
-- Common KEYS and ARGV (every operation script takes these first):
--   KEYS[1]  the session's log stream            (sh:{id}:log)
--   KEYS[2]  the session's log metadata hash     (sh:{id}:logmeta: epoch, offset)
--   ARGV[1]  the session's pub/sub channel
--   ARGV[2]  the session id
--   ARGV[3]  `<token>|<id key>`: a token no other call has (the epoch if the log has to start
--            anew, and the stem of this call's event ids), and the deployment's secret that
--            seals each event id to its session, epoch and offset (`<token>.<n>.<seal>`), so a
--            resuming client's claim of an id is evidence only when the server issued it
--   ARGV[4]  now, unix ms
--   ARGV[5]  approximate maximum length of the log stream
-- Operation-specific KEYS start at KEYS[3], ARGV at ARGV[6].
local log_key = KEYS[1]
local log_meta_key = KEYS[2]
local channel = ARGV[1]
local session_id = ARGV[2]
local call_token, id_key = string.match(ARGV[3], '^([^|]*)|?(.*)$')
local now_ms = tonumber(ARGV[4])
-- now as JSON: the digits as given (the common case: no sprintf per envelope), else as Lua
-- writes the number (what cjson wrote before)
local now_text = ARGV[4]
if not string.find(now_text, '^%d+$') then
  now_text = tostring(now_ms)
end
local log_maxlen = ARGV[5]
local events_in_call = 0
-- A log holds ARGV[5] events, and at most about LOG_BYTES of large ones: an event over
-- LOG_BYTES / ARGV[5] (a pattern's whole state replaced, up to 64 KiB) trims the log to
-- LOG_BYTES / its size, never under LOG_MIN events. A thousand whole states were 65 MB of one
-- session's log, written by anyone (the pattern API takes no token), and 4 MiB kept for ever
-- per pattern still let one address store 2 GB a day in its 500 patterns; a client resuming
-- from further back than the log holds gets a snapshot, as for any trimmed log (one whole
-- state: less than the events it missed).
-- A whole state (an event of LARGE bytes or more) is kept within WHOLE_BYTES, at least WHOLE_MIN
-- of them: a client behind by more gets a snapshot, itself one whole state, so more of them in
-- the log replay nothing a snapshot does not give. At 1 MiB and 16 a pattern kept for ever cost
-- 1.25 MB of Redis after 18 replacements by anyone (an audit: 0.6 GB a day from one address).
local LOG_BYTES = 1048576
local LOG_MIN = 16
local LARGE = 16384
local WHOLE_BYTES = 262144
local WHOLE_MIN = 4
local function maxlen_for(event)
  local size = #event
  local budget, least = LOG_BYTES, LOG_MIN
  if size >= LARGE then
    budget, least = WHOLE_BYTES, WHOLE_MIN
  end
  local fits = math.floor(budget / size)
  if fits >= tonumber(log_maxlen) then
    return log_maxlen
  end
  return tostring(math.max(fits, least))
end

-- A JSON string literal: quoted as is when it holds only characters JSON never escapes (ids,
-- tokens, event types, statuses: the common case, no cjson call), else encoded by cjson.
local function json_string(text)
  if string.find(text, '^[%w%-%._:]*$') then
    return '"' .. text .. '"'
  end
  return cjson.encode(text)
end

-- The sealed id and the JSON text of an event at (epoch, offset); `offset_text` is the offset
-- in digits, formatted once by the caller (a Lua number written into a string costs a
-- sprintf each time it is).
local function envelope(etype, data_json, stem, epoch, offset_text)
  local event_id = stem
  if id_key ~= '' then
    event_id = stem .. '.' .. string.sub(redis.sha1hex(id_key .. '|' .. session_id .. '|' .. epoch .. '|' .. offset_text), 1, 16)
  end
  local event = '{"session_id":' .. json_string(session_id) .. ',"epoch":' .. json_string(epoch)
    .. ',"offset":' .. offset_text .. ',"id":' .. json_string(event_id) .. ',"type":' .. json_string(etype)
    .. ',"ts":' .. now_text .. ',"data":' .. data_json .. '}'
  return event_id, event
end

-- Appends one event; `data_json` is a JSON object encoded by the caller (Python's json.dumps
-- or cjson.encode here). The envelope is built here and the data spliced in as is, so that
-- Python's encoding of the data (floats, empty lists) reaches clients unchanged.
-- Every event has an `id` no other event has: a client resuming from an offset names the id
-- it saw there, so history rewritten by a Redis that lost writes is noticed (storage/events.py).
-- Every command a script runs costs Redis (and so every session on it) about a microsecond,
-- and this runs once per committed event: epoch and offset come in one read, and the log's
-- existence is checked by the append itself (XADD NOMKSTREAM answers nil when the log is gone).
local function append_event(etype, data_json)
  local meta = redis.call('HMGET', log_meta_key, 'epoch', 'offset')
  local epoch = meta[1]
  events_in_call = events_in_call + 1
  local stem = call_token .. '.' .. events_in_call
  local offset, offset_text, event_id, event
  local added = false
  if epoch then
    offset = tonumber(meta[2] or '0') + 1
    offset_text = tostring(offset)
    event_id, event = envelope(etype, data_json, stem, epoch, offset_text)
    added = redis.call('XADD', log_key, 'NOMKSTREAM', 'MAXLEN', '~', maxlen_for(event), offset_text .. '-0', 'e', event)
  end
  if not added then
    -- The log (or its metadata) is gone: start a new epoch so that every client holding an
    -- offset of the old one is told its history cannot be recovered.
    epoch, offset, offset_text = call_token, 1, '1'
    event_id, event = envelope(etype, data_json, stem, epoch, offset_text)
    redis.call('DEL', log_key)
    redis.call('XADD', log_key, 'MAXLEN', '~', maxlen_for(event), '1-0', 'e', event)
  end
  redis.call('HSET', log_meta_key, 'epoch', epoch, 'offset', offset_text, 'id', event_id)
  redis.call('PUBLISH', channel, event)
  return offset
end

-- The owner-based access rule (auth/access.py states the same in Python): read with scope
-- 'all', or 'own' on one's own session; changes also need the update permission.
-- Returns nil when allowed, else the error code. `found_kind` and `found_owner` are the
-- record's `kind` and `owner_id` fields (false when absent), read by the caller: a script
-- that needs more of the record reads it all in one HMGET.
local function owner_access_refusal(found_kind, found_owner, kind, performer, read_scope, may_update)
  if found_kind ~= kind then
    return 'session_not_found'
  end
  if not (read_scope == 'all' or (read_scope == 'own' and found_owner == performer)) then
    return 'forbidden'
  end
  if may_update ~= '1' then
    return 'forbidden'
  end
  return nil
end

-- The same rule, reading the record's kind and owner itself.
local function check_owner_access(record_key, kind, performer, read_scope, may_update)
  local found = redis.call('HMGET', record_key, 'kind', 'owner_id')
  return owner_access_refusal(found[1], found[2], kind, performer, read_scope, may_update)
end
