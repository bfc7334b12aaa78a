-- Adds one audio chunk to a voice session: access, dedupe, open state and the cap are checked
-- in the same step as the change, then the chunk is published as a new_message event.
-- A closed session still takes a *late* chunk: one recorded before it closed (its start before
-- `closed_at` + ARGV[17], and not more than ARGV[18] before `created_at`: a start that is no
-- unix time, as a client counting from its recording's start sends, says nothing of the close),
-- arriving within ARGV[16] of the close (a recorder offline meanwhile, or one that heard of the
-- close only after it): nothing the person recorded is lost.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the session hash
--   KEYS[4]  the session's chunks hash (chunk id -> chunk JSON)
--   KEYS[5]  the session's chunk order (sorted set scored by start ms)
--   KEYS[6]  the session's digest index (sha256 -> chunk id; sha256@start ms -> chunk id for a
--            chunk of the same audio as an earlier one, recorded at another time)
--   ARGV[6]  the performer's user id
--   ARGV[7]  the performer's read scope: 'all', 'own' or 'none'
--   ARGV[8]  '1' when the performer has the update permission
--   ARGV[9]  the audio's sha256 (hex)
--   ARGV[10] the chunk, a JSON object without chunk_id/seq (spliced in here)
--   ARGV[11] the chunk's start, ms (the order score)
--   ARGV[12] the file's size, bytes
--   ARGV[13] the chunk's duration, ms
--   ARGV[14] most chunks a session may hold
--   ARGV[15] event type (new_message)
--   ARGV[16] how long after the close a late chunk is still taken, ms (0: none is)
--   ARGV[17] the recorder's clock skew allowed when its start is compared with closed_at, ms
--   ARGV[18] how long before the session's created_at a late chunk's start may be, ms
-- Returns {offset, chunk_id, duplicate (0|1), chunk_count, audio_ms, storage_bytes, late (0|1),
-- stored bytes (what this chunk adds to storage_bytes: 0 for a duplicate, and for a chunk whose
-- file an earlier one of the same audio holds)}
-- (late: taken by the closed session after its close; for a duplicate, stored after the close)
-- or {false, code}: session_not_found, forbidden, invalid_state (closed, and not a late chunk
-- taken), limit_reached.
local session_key = KEYS[3]
local chunks_key = KEYS[4]
local order_key = KEYS[5]
local digests_key = KEYS[6]
local performer = ARGV[6]
local read_scope = ARGV[7]
local may_update = ARGV[8]
local sha256 = ARGV[9]
local chunk_json = ARGV[10]
local start_ms = tonumber(ARGV[11])
local size_bytes = tonumber(ARGV[12])
local duration_ms = tonumber(ARGV[13])
local max_chunks = tonumber(ARGV[14])
local event_type = ARGV[15]
local late_window_ms = tonumber(ARGV[16])
local skew_ms = tonumber(ARGV[17])
local earliest_ms = tonumber(ARGV[18])

local function totals()
  local t = redis.call('HMGET', session_key, 'chunk_count', 'audio_ms', 'storage_bytes')
  return tonumber(t[1] or '0'), tonumber(t[2] or '0'), tonumber(t[3] or '0')
end

local refused = check_owner_access(session_key, 'voice', performer, read_scope, may_update)
if refused then
  return {false, refused}
end
local state = redis.call('HMGET', session_key, 'is_active', 'status', 'closed_at', 'created_at')
local closed_at = state[2] == 'closed' and tonumber(state[3]) or nil
-- A retried upload whose first ack was lost is the same chunk, even after the session closed. A
-- late one says so again: its first try may have stored it and died before its re-processing
-- was queued (the caller queues it at most once).
-- A retry repeats the chunk's start too: the same audio at another start is a chunk of its own
-- (silence, a fixed tone: the raw PCM or WAV chunks of a client other than the browser's, whose
-- WebM and Ogg carry their timecodes), indexed under sha256@start. Matched on the audio alone,
-- it was answered as a duplicate of the first and its stretch of the session was lost.
local digest_field = sha256
local existing = redis.call('HGET', digests_key, sha256)
if existing then
  local first = cjson.decode(redis.call('HGET', chunks_key, existing) or '{}')
  if tonumber(first.start_ms) ~= start_ms then
    digest_field = sha256 .. '@' .. ARGV[11]
    existing = redis.call('HGET', digests_key, digest_field)
  end
end
if existing then
  local count, audio, bytes = totals()
  local was_late = 0
  if closed_at then
    local stored = cjson.decode(redis.call('HGET', chunks_key, existing) or '{}')
    if (tonumber(stored.uploaded_at) or 0) > closed_at then
      was_late = 1
    end
  end
  return {0, existing, 1, count, audio, bytes, was_late, 0}
end
local late = 0
if state[1] ~= '1' then
  -- Recorded after the close (by the recorder's clock), a start that is no unix time, a session
  -- not closed but inactive, or past the window: refused as ever.
  local created_at = tonumber(state[4]) or 0
  if not closed_at or start_ms >= closed_at + skew_ms or start_ms < created_at - earliest_ms
    or now_ms > closed_at + late_window_ms then
    return {false, 'invalid_state'}
  end
  late = 1
end
if redis.call('HLEN', chunks_key) >= max_chunks then
  return {false, 'limit_reached'}
end
local seq = redis.call('HINCRBY', session_key, 'chunk_seq', 1)
local chunk_id = string.format('ch%06d', seq)
local stored = string.format('{"chunk_id":"%s","seq":%d,', chunk_id, seq) .. string.sub(chunk_json, 2)
redis.call('HSET', chunks_key, chunk_id, stored)
redis.call('ZADD', order_key, start_ms, chunk_id)
redis.call('HSET', digests_key, digest_field, chunk_id)
redis.call('HINCRBY', session_key, 'chunk_count', 1)
redis.call('HINCRBY', session_key, 'audio_ms', duration_ms)
-- The storage the session uses: a file shared with an earlier chunk of the same audio is there
-- once (counted twice, the session's storage, the owner's quota and a delete's freed bytes said
-- twice what the disk held: audit "verify41").
local added_bytes = size_bytes
if digest_field ~= sha256 then
  added_bytes = 0
end
redis.call('HINCRBY', session_key, 'storage_bytes', added_bytes)
redis.call('HSET', session_key, 'updated_at', now_ms)
local count, audio, bytes = totals()
local data = string.format('{"chunk":%s,"chunk_count":%d,"audio_ms":%d,"storage_bytes":%d', stored, count, audio, bytes)
if late == 1 then
  data = data .. ',"late":true'
end
return {append_event(event_type, data .. '}'), chunk_id, 0, count, audio, bytes, late, added_bytes}
