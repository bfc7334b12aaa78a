-- Drops a deleted session from the admin indexes and takes its bytes (and its files' bytes) off
-- its kind's totals.
-- Runs right after SessionDirectory.unindex's own step (see index.lua). Removing an id that
-- is not indexed (or indexed under another kind) changes nothing.
--   KEYS[1]  hash id -> kind
--   KEYS[2]  created, this kind
--   KEYS[3]  created, every kind
--   KEYS[4]  accessed, this kind
--   KEYS[5]  accessed, every kind
--   KEYS[6]  updated
--   KEYS[7]  size (bytes) per session
--   KEYS[8]  remix count per session
--   KEYS[9]  hash kind -> total bytes
--   KEYS[10] file bytes per session
--   KEYS[11] hash kind -> total file bytes
--   (KEYS[1..8] as set.lua's: storage/sessions.py admin_set_keys)
--   ARGV[1]  session id
--   ARGV[2]  kind (as HGET KEYS[1] gave it)
-- Returns 1 when removed, 0 when there was nothing to remove.
local kind_of_key = KEYS[1]
local created_kind_key = KEYS[2]
local created_all_key = KEYS[3]
local accessed_kind_key = KEYS[4]
local accessed_all_key = KEYS[5]
local updated_key = KEYS[6]
local size_key = KEYS[7]
local remixes_key = KEYS[8]
local bytes_key = KEYS[9]
local files_key = KEYS[10]
local file_bytes_key = KEYS[11]
local session_id = ARGV[1]
local kind = ARGV[2]

if redis.call('HGET', kind_of_key, session_id) ~= kind then
  return 0
end
local size = tonumber(redis.call('ZSCORE', size_key, session_id) or '0')
redis.call('HDEL', kind_of_key, session_id)
redis.call('ZREM', created_kind_key, session_id)
redis.call('ZREM', created_all_key, session_id)
redis.call('ZREM', accessed_kind_key, session_id)
redis.call('ZREM', accessed_all_key, session_id)
redis.call('ZREM', updated_key, session_id)
redis.call('ZREM', size_key, session_id)
redis.call('ZREM', remixes_key, session_id)
if size ~= 0 then
  redis.call('HINCRBY', bytes_key, kind, -size)
end
local files = tonumber(redis.call('ZSCORE', files_key, session_id) or '0')
redis.call('ZREM', files_key, session_id)
if files ~= 0 then
  redis.call('HINCRBY', file_bytes_key, kind, -files)
end
return 1
