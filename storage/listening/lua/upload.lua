-- An offline player's finished session, stored once per client_id: a repeat returns the
-- stored one; a range overlapping one of the same device's sessions is refused.
--   KEYS[1..12], ARGV[1..8]  see core/_event.lua and _history.lua
--   ARGV[9]   device id
--   ARGV[10]  item id
--   ARGV[11]  started_at, ms
--   ARGV[12]  ended_at, ms (the caller checked started_at < ended_at <= now, unless ARGV[19])
--   ARGV[13]  client id
--   ARGV[14]  id for the new session
--   ARGV[15]  item metadata JSON, or ''
--   ARGV[16]  most distinct items per history
--   ARGV[17]  most sessions per history
--   ARGV[18]  minimum session length, ms
--   ARGV[19]  why the caller refuses the upload's times ('' for none): a repeat of a stored
--             client_id is still answered as the repeat it is (its times were checked when it
--             was stored; a resend a year later, or whose player's clock moved, would be refused)
--   KEYS[13]  the client ids a clear put aside (clear.lua): one of them is an upload cleared
-- Returns {offset, 'uploaded' | 'duplicate' | 'deleted', record JSON or '', the item's stored
-- metadata JSON or ''} or {false, code}. 'deleted': shorter than the minimum, dropped like a
-- live accidental tap (nothing stored, so a repeat answers the same).
local device = ARGV[9]
local item = ARGV[10]
local started_at = tonumber(ARGV[11])
local ended_at = tonumber(ARGV[12])
local client_id = ARGV[13]
local new_id = ARGV[14]
local meta_json = ARGV[15]
local max_items = tonumber(ARGV[16])
local max_sessions = tonumber(ARGV[17])
local min_ms = tonumber(ARGV[18])
local times_refused = ARGV[19]

local function answer(offset, action, rec_json)
  return {offset, action, rec_json, rec_json ~= '' and redis.call('HGET', meta_key, item) or ''}
end

local refused = owner_refusal()
if refused then
  return {false, refused}
end

local known = redis.call('HGET', clients_key, client_id)
if known then
  local stored = redis.call('HGET', records_key, known)
  return answer(0, 'duplicate', stored or '')
end
-- Stored before a clear and sent again after it: that upload, cleared (nothing brought back).
if redis.call('HEXISTS', KEYS[13], client_id) == 1 then
  return answer(0, 'duplicate', '')
end
if times_refused ~= '' then
  return {false, 'invalid_payload', times_refused}
end
if ended_at - started_at < min_ms then
  return answer(0, 'deleted', '')
end

-- The device's open session runs until now, whatever its last written end: the longest span
-- below is of written ends, and missed one that began longer than that before the upload (the
-- open session then grew over it, the same seconds counted twice).
local playing = load(redis.call('HGET', open_key, device))
if playing and playing.started_at < ended_at then
  return {false, 'conflict'}
end
-- Any other session overlapping [started_at, ended_at) starts before ended_at and at most the
-- longest span before started_at.
local max_span = tonumber(redis.call('HGET', stats_key, 'max_span_ms') or '0')
local nearby = redis.call('ZRANGEBYSCORE', by_start_key, started_at - max_span, '(' .. ended_at)
for _, id in ipairs(nearby) do
  local other = load(id)
  if other and other.device_id == device then
    -- An open session runs until now, whatever its last written end.
    local other_end = other.open and now_ms or other.ended_at
    if other.started_at < ended_at and other_end > started_at then
      return {false, 'conflict'}
    end
  end
end

if not redis.call('ZSCORE', items_key, item) and redis.call('ZCARD', items_key) >= max_items then
  return {false, 'limit_reached', 'items:' .. max_items}
end
if redis.call('HLEN', records_key) >= max_sessions then
  return {false, 'limit_reached', 'sessions:' .. max_sessions}
end
merge_meta(item, meta_json)
local rec = {
  id = new_id, item_id = item, device_id = device, source = 'upload', open = false,
  started_at = started_at, ended_at = ended_at, written_at = now_ms, client_id = client_id,
}
insert(rec)
redis.call('HSET', clients_key, client_id, new_id)
-- The device's latest session may resume (report.lua), whether it was played live or offline.
local last = load(redis.call('HGET', last_key, device))
if not last or last.ended_at <= ended_at then
  redis.call('HSET', last_key, device, new_id)
end
return answer(session_changed('uploaded', nil, rec), 'uploaded', cjson.encode(rec))
