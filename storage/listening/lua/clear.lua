-- Deletes the whole listening history (sessions, open sessions, totals, item metadata and
-- upload ids); the history session itself and its log stay, so every tab hears it.
--   KEYS[1..12], ARGV[1..8]  see core/_event.lua and _history.lua
--   KEYS[13] the answers of the presses with a request id: a zset of
--            'request id NUL offset NUL sessions removed' scored by when (one key per history)
--   KEYS[14] the upload client ids put aside by clears (a hash with a TTL, see upload.lua)
--   KEYS[15] the press's answer as nodes before the zset kept it (a string with a TTL, one per
--            request id): read, never written, so that a press answered by such a node in a rolling
--            upgrade and resent to this one is still that press (a day after it, gone by itself)
--   ARGV[9]  event type of the clearing
--   ARGV[10] the client's request id ('' when none was given)
--   ARGV[11] how long the answer of a press with a request id is kept (ms)
--   ARGV[12] how many of those answers are kept at most (the newest)
-- Returns {offset, sessions removed, repeated (0|1)} or {false, code}.
-- A press with a request id that was answered already is answered the same (repeated) and
-- deletes nothing: a resend after a lost ack must not delete what was played since. The answers
-- are one bounded key: a key each, a day each, let one guest fill Redis with presses of new ids
-- (audit "exhaust3").
local cleared_event = ARGV[9]
local request_key = KEYS[13]
local request_id = ARGV[10]
local request_ttl_ms = tonumber(ARGV[11])
local requests_kept = tonumber(ARGV[12])

local refused = owner_refusal()
if refused then
  return {false, refused}
end
if request_id ~= '' then
  redis.call('ZREMRANGEBYSCORE', request_key, '-inf', now_ms - request_ttl_ms)
  local prefix = request_id .. '\0'
  for _, entry in ipairs(redis.call('ZRANGE', request_key, 0, -1)) do
    if string.sub(entry, 1, #prefix) == prefix then
      local offset, removed = string.match(string.sub(entry, #prefix + 1), '^(%d+)%z(%d+)$')
      return {tonumber(offset), tonumber(removed), 1}
    end
  end
  local earlier = redis.call('GET', KEYS[15])
  if earlier then
    local answer = cjson.decode(earlier)
    return {answer.offset, answer.removed, 1}
  end
end
local count = redis.call('HLEN', records_key)
-- The uploads' client ids are put aside for a day, not dropped: an upload stored before this
-- clear and resent after it (its ack lost) must not come back as a new session.
local aside_key = KEYS[14]
if redis.call('EXISTS', clients_key) == 1 then
  if redis.call('EXISTS', aside_key) == 1 then
    local cursor = '0'
    repeat
      local page = redis.call('HSCAN', clients_key, cursor, 'COUNT', 1000)
      cursor = page[1]
      if #page[2] > 0 then
        redis.call('HSET', aside_key, unpack(page[2]))
      end
    until cursor == '0'
    redis.call('DEL', clients_key)
  else
    redis.call('RENAME', clients_key, aside_key)
  end
  redis.call('PEXPIRE', aside_key, request_ttl_ms)
end
redis.call('DEL', records_key, by_start_key, by_item_key, items_key, meta_key, open_key, last_key,
  stats_key)
local offset = append_event(cleared_event, cjson.encode({removed = count}))
if request_id ~= '' then
  redis.call('ZADD', request_key, now_ms, request_id .. '\0' .. offset .. '\0' .. count)
  redis.call('ZREMRANGEBYRANK', request_key, 0, -(requests_kept + 1))
  redis.call('PEXPIRE', request_key, request_ttl_ms)
end
return {offset, count, 0}
