-- A whole session's clips as of one moment, with the record and the log position they reflect.
-- Reads only, except the copy: a session of at most ARGV[1] clips is answered here (HVALS);
-- a bigger one (SESSIONHUB_CLIPS_MAX_PER_SESSION may be up to a million) is copied as it is now
-- to KEYS[5], which the caller reads in pages (HSCAN) and then deletes. Answering it all here
-- made one reply of every clip, which the server parsed in one go (a 200,000-clip stream held
-- the event loop for ~0.5 s before anything else could run).
--   KEYS[1]  the session hash
--   KEYS[2]  the session's segment list
--   KEYS[3]  the session's log metadata hash
--   KEYS[4]  the session's clips hash (clip id -> clip JSON)
--   KEYS[5]  the copy to make of KEYS[4] when it is big (keys.stream_clips_copy)
--   ARGV[1]  most clips answered here
--   ARGV[2]  ms the copy lives if the caller never deletes it (a process gone mid-read)
-- Returns {session fields (flat), segments, {epoch, offset}, clip JSON list, clips copied (0: none)}.
local fields = redis.call('HGETALL', KEYS[1])
local segments = redis.call('LRANGE', KEYS[2], 0, -1)
local position = redis.call('HMGET', KEYS[3], 'epoch', 'offset')
local count = redis.call('HLEN', KEYS[4])
if count <= tonumber(ARGV[1]) then
  return {fields, segments, position, redis.call('HVALS', KEYS[4]), 0}
end
redis.call('COPY', KEYS[4], KEYS[5], 'REPLACE')
redis.call('PEXPIRE', KEYS[5], ARGV[2])
return {fields, segments, position, {}, count}
