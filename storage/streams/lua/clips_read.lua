-- A whole session's clips as of one moment, with the record and the log position they reflect.
-- Reads only. A session of at most ARGV[1] clips is answered here (HVALS); a bigger one
-- (SESSIONHUB_CLIPS_MAX_PER_SESSION may be up to a million) is answered with its count only:
-- the caller then reads the clips hash itself in HSCAN pages from this position and settles
-- it with the log (clips_settle.lua). Answering it all here made one reply of every clip
-- (a 200,000-clip stream held the event loop ~0.5 s), and copying it (COPY, what this did
-- before) held Redis itself ~100 ms for every session of every user.
--   KEYS[1]  the session hash
--   KEYS[2]  the session's segment list
--   KEYS[3]  the session's log metadata hash
--   KEYS[4]  the session's clips hash (clip id -> clip JSON)
--   ARGV[1]  most clips answered here
-- Returns {session fields (flat), segments, {epoch, offset}, clip JSON list, clips held when
-- they are more than ARGV[1] (0: all answered here)}.
local fields = redis.call('HGETALL', KEYS[1])
local segments = redis.call('LRANGE', KEYS[2], 0, -1)
local position = redis.call('HMGET', KEYS[3], 'epoch', 'offset')
local count = redis.call('HLEN', KEYS[4])
if count <= tonumber(ARGV[1]) then
  return {fields, segments, position, redis.call('HVALS', KEYS[4]), 0}
end
return {fields, segments, position, {}, count}
