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
local log_maxlen = ARGV[5]
local events_in_call = 0

-- Appends one event; `data_json` is a JSON object encoded by the caller (Python's json.dumps
-- or cjson.encode here). The envelope is encoded by cjson and the data spliced in as is, so
-- that Python's encoding of the data (floats, empty lists) reaches clients unchanged.
-- Every event has an `id` no other event has: a client resuming from an offset names the id
-- it saw there, so history rewritten by a Redis that lost writes is noticed (storage/events.py).
local function append_event(etype, data_json)
  -- epoch and offset in one read: every command a script runs costs Redis (and so every
  -- session on it) about a microsecond, and this runs once per committed event
  local meta = redis.call('HMGET', log_meta_key, 'epoch', 'offset')
  local epoch = meta[1]
  local offset = 0
  if (not epoch) or redis.call('EXISTS', log_key) == 0 then
    -- The log (or its metadata) is gone: start a new epoch so that every client holding an
    -- offset of the old one is told its history cannot be recovered.
    epoch = call_token
    redis.call('DEL', log_key)
  else
    offset = tonumber(meta[2] or '0')
  end
  offset = offset + 1
  events_in_call = events_in_call + 1
  local event_id = call_token .. '.' .. events_in_call
  if id_key ~= '' then
    event_id = event_id .. '.' .. string.sub(redis.sha1hex(id_key .. '|' .. session_id .. '|' .. epoch .. '|' .. offset), 1, 16)
  end
  redis.call('HSET', log_meta_key, 'epoch', epoch, 'offset', offset, 'id', event_id)
  local envelope = cjson.encode({session_id = session_id, epoch = epoch, offset = offset, id = event_id,
    type = etype, ts = now_ms})
  local event = string.sub(envelope, 1, -2) .. ',"data":' .. data_json .. '}'
  redis.call('XADD', log_key, 'MAXLEN', '~', log_maxlen, offset .. '-0', 'e', event)
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
