-- Starts a new epoch for a log whose history can no longer be trusted: Redis came back with
-- less than it had acknowledged (offsets went backwards), so the same offsets would otherwise
-- be handed out again for different events. Idempotent: a log already moved past
-- `expected_epoch` is left alone.
--   KEYS[1]  the session's log stream
--   KEYS[2]  the session's log metadata hash (epoch, offset, id)
--   ARGV[1]  the session's pub/sub channel
--   ARGV[2]  the session id
--   ARGV[3]  the epoch found to be rewritten
--   ARGV[4]  the new epoch
--   ARGV[5]  the resync notice's type (session_resync)
-- Returns {epoch, offset}: the log's epoch afterwards and its offset.
-- The stream keeps its key (and its last entry id, so offsets go on rising) but loses every
-- entry: nothing of the untrusted epoch can be replayed. A notice, not a log entry, tells every
-- node's bus that the epoch changed, so their subscribers are told to take a snapshot.
local log_key = KEYS[1]
local log_meta_key = KEYS[2]
local channel = ARGV[1]
local session_id = ARGV[2]
local expected_epoch = ARGV[3]
local new_epoch = ARGV[4]
local notice_type = ARGV[5]

local epoch = redis.call('HGET', log_meta_key, 'epoch')
local offset = tonumber(redis.call('HGET', log_meta_key, 'offset') or '0')
if epoch ~= expected_epoch then
  return {epoch or '', offset}
end
redis.call('HSET', log_meta_key, 'epoch', new_epoch, 'id', '')
if redis.call('EXISTS', log_key) == 1 then
  redis.call('XTRIM', log_key, 'MAXLEN', 0)
end
redis.call('PUBLISH', channel, cjson.encode({session_id = session_id, epoch = new_epoch, offset = offset,
  id = '', type = notice_type}))
return {new_epoch, offset}
