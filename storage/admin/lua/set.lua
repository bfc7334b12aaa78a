-- Writes one session's admin index entries as recalculated from its data (admin recalculate).
-- The kind byte totals (and file byte totals) are rewritten as a whole afterwards, so they are
-- left alone here.
--   KEYS[1]  hash id -> kind
--   KEYS[2]  created, this kind
--   KEYS[3]  created, every kind
--   KEYS[4]  accessed, this kind
--   KEYS[5]  accessed, every kind
--   KEYS[6]  updated
--   KEYS[7]  size (bytes) per session
--   KEYS[8]  remix count per session
--   KEYS[9]  file bytes per session (only sessions that keep files)
--   ARGV[1]  session id
--   ARGV[2]  kind
--   ARGV[3]  created ms
--   ARGV[4]  accessed ms
--   ARGV[5]  updated ms
--   ARGV[6]  size, bytes
--   ARGV[7]  the record's remix_count
--   ARGV[8]  bytes of its files outside Redis
-- Returns 1.
local kind_of_key = KEYS[1]
local created_kind_key = KEYS[2]
local created_all_key = KEYS[3]
local accessed_kind_key = KEYS[4]
local accessed_all_key = KEYS[5]
local updated_key = KEYS[6]
local size_key = KEYS[7]
local remixes_key = KEYS[8]
local files_key = KEYS[9]
local session_id = ARGV[1]
local kind = ARGV[2]
local created_ms = ARGV[3]
local accessed_ms = ARGV[4]
local updated_ms = ARGV[5]
local size = ARGV[6]
local remix_count = ARGV[7]
local files = ARGV[8]

redis.call('HSET', kind_of_key, session_id, kind)
redis.call('ZADD', created_kind_key, created_ms, session_id)
redis.call('ZADD', created_all_key, created_ms, session_id)
redis.call('ZADD', accessed_kind_key, accessed_ms, session_id)
redis.call('ZADD', accessed_all_key, accessed_ms, session_id)
redis.call('ZADD', updated_key, updated_ms, session_id)
redis.call('ZADD', size_key, size, session_id)
redis.call('ZADD', remixes_key, remix_count, session_id)
if tonumber(files) > 0 then
  redis.call('ZADD', files_key, files, session_id)
else
  redis.call('ZREM', files_key, session_id)
end
return 1
