-- Adds a new session to the admin indexes (counts by kind, creation, access, change times).
-- Runs right after SessionDirectory.index's own step, apart from the session's script: these
-- keys share the {admin} hash tag, not the session's. Adding an id already indexed changes
-- nothing, so a retried creation never counts twice.
--   KEYS[1]  hash id -> kind
--   KEYS[2]  created, this kind
--   KEYS[3]  created, every kind
--   KEYS[4]  accessed, this kind
--   KEYS[5]  accessed, every kind
--   KEYS[6]  updated (last event time)
--   KEYS[7]  size (bytes) per session
--   KEYS[8]  remix count per session
--   KEYS[9]  operation counters hash
--   (KEYS[1..8] as set.lua's: storage/sessions.py admin_set_keys)
--   ARGV[1]  session id
--   ARGV[2]  kind
--   ARGV[3]  creation time, unix ms
--   ARGV[4]  the month's writes counter field (writes:<yyyymm>)
-- Returns 1 when added, 0 when it was indexed already.
local kind_of_key = KEYS[1]
local created_kind_key = KEYS[2]
local created_all_key = KEYS[3]
local accessed_kind_key = KEYS[4]
local accessed_all_key = KEYS[5]
local updated_key = KEYS[6]
local size_key = KEYS[7]
local remixes_key = KEYS[8]
local ops_key = KEYS[9]
local session_id = ARGV[1]
local kind = ARGV[2]
local created_ms = ARGV[3]
local writes_field = ARGV[4]

if redis.call('HSETNX', kind_of_key, session_id, kind) == 0 then
  return 0
end
redis.call('ZADD', created_kind_key, created_ms, session_id)
redis.call('ZADD', created_all_key, created_ms, session_id)
redis.call('ZADD', accessed_kind_key, created_ms, session_id)
redis.call('ZADD', accessed_all_key, created_ms, session_id)
redis.call('ZADD', updated_key, created_ms, session_id)
-- Sized 0 until measured (the record is written after this step; a pattern is measured right
-- after, SessionDirectory.record_size, others at their first touch), so size sorts list it.
redis.call('ZADD', size_key, 0, session_id)
-- Every session is in the remix index from the start, so a sort by remix count lists all of
-- them; a remix later raises its score (PatternSessions.count_remix, ZADD XX GT).
redis.call('ZADD', remixes_key, 0, session_id)
redis.call('HINCRBY', ops_key, writes_field, 1)
return 1
