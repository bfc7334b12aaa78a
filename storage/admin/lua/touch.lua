-- Records an access to a session: its last access and last change times, its stored size and
-- the bytes of its files kept outside Redis, keeping its kind's totals of each equal to the sum
-- of its sessions'. Times only move
-- forward (two nodes touching at once keep the later one). A session that its kind indexed
-- without naming its kind (SessionDirectory.index without ``kind``) is added here, at its
-- first lookup.
--   KEYS[1]  hash id -> kind
--   KEYS[2]  accessed, this kind
--   KEYS[3]  accessed, every kind
--   KEYS[4]  updated
--   KEYS[5]  size (bytes) per session
--   KEYS[6]  hash kind -> total bytes
--   KEYS[7]  operation counters hash
--   KEYS[8]  created, this kind
--   KEYS[9]  created, every kind
--   KEYS[10] remix count per session
--   KEYS[11] file bytes per session (only sessions that keep files)
--   KEYS[12] hash kind -> total file bytes
--   ARGV[1]  session id
--   ARGV[2]  kind
--   ARGV[3]  access time, unix ms ('' leaves it)
--   ARGV[4]  last event time, unix ms ('' leaves it)
--   ARGV[5]  stored size, bytes ('' leaves it)
--   ARGV[6]  the month's reads counter field ('' counts nothing)
--   ARGV[7]  the record's creation time, unix ms (used when the session is added here)
--   ARGV[8]  bytes of its files outside Redis ('' leaves them)
-- Returns {1, last access before this one (ms)} when recorded (the creation time for a session
-- added here; what SessionDirectory.access judges orphans by), {0, ''} when the session is
-- indexed under another kind.
local kind_of_key = KEYS[1]
local accessed_kind_key = KEYS[2]
local accessed_all_key = KEYS[3]
local updated_key = KEYS[4]
local size_key = KEYS[5]
local bytes_key = KEYS[6]
local ops_key = KEYS[7]
local created_kind_key = KEYS[8]
local created_all_key = KEYS[9]
local remixes_key = KEYS[10]
local files_key = KEYS[11]
local file_bytes_key = KEYS[12]
local session_id = ARGV[1]
local kind = ARGV[2]
local accessed_ms = ARGV[3]
local updated_ms = ARGV[4]
local size = ARGV[5]
local reads_field = ARGV[6]
local created_ms = ARGV[7]
local files = ARGV[8]

local indexed_as = redis.call('HGET', kind_of_key, session_id)
local previous_ms = redis.call('ZSCORE', accessed_all_key, session_id)
if not indexed_as then
  previous_ms = created_ms
  redis.call('HSET', kind_of_key, session_id, kind)
  redis.call('ZADD', created_kind_key, created_ms, session_id)
  redis.call('ZADD', created_all_key, created_ms, session_id)
  redis.call('ZADD', accessed_kind_key, created_ms, session_id)
  redis.call('ZADD', accessed_all_key, created_ms, session_id)
  redis.call('ZADD', updated_key, created_ms, session_id)
  redis.call('ZADD', size_key, 0, session_id)
  redis.call('ZADD', remixes_key, 'NX', 0, session_id)
elseif indexed_as ~= kind then
  return {0, ''}
end
if accessed_ms ~= '' then
  redis.call('ZADD', accessed_kind_key, 'GT', accessed_ms, session_id)
  redis.call('ZADD', accessed_all_key, 'GT', accessed_ms, session_id)
end
if updated_ms ~= '' then
  redis.call('ZADD', updated_key, 'GT', updated_ms, session_id)
end
if size ~= '' then
  local old = tonumber(redis.call('ZSCORE', size_key, session_id) or '0')
  redis.call('ZADD', size_key, size, session_id)
  redis.call('HINCRBY', bytes_key, kind, tonumber(size) - old)
end
if files ~= '' then
  local old = tonumber(redis.call('ZSCORE', files_key, session_id) or '0')
  if tonumber(files) > 0 then
    redis.call('ZADD', files_key, files, session_id)
  else
    redis.call('ZREM', files_key, session_id)
  end
  if tonumber(files) ~= old then
    redis.call('HINCRBY', file_bytes_key, kind, tonumber(files) - old)
  end
end
if reads_field ~= '' then
  redis.call('HINCRBY', ops_key, reads_field, 1)
end
return {1, previous_ms or created_ms}
