-- Record revoked device families: in the set every node reads whole at its start, and in the
-- log each node reads from where it stopped (one small read per poll instead of the whole set).
-- KEYS[1] families  sorted set family id -> until when (ms) its access tokens are refused
-- KEYS[2] log       stream of the revocations, entry ids 0-<n> (n counts from 1, without a gap)
-- KEYS[3] head      hash: seq (the log's last n), epoch (names this log; a new log, a new epoch)
-- ARGV[1] until_ms  refused until then
-- ARGV[2] now_ms    entries of the set that expired are dropped
-- ARGV[3] epoch     the epoch taken when the log is new (or its head was lost)
-- ARGV[4] max_len   how many entries the log keeps, about (a node further behind reads the set)
-- ARGV[5..]         the family ids
-- Returns the log's last n.
local families, log, head = KEYS[1], KEYS[2], KEYS[3]
local until_ms = ARGV[1]
redis.call('ZREMRANGEBYSCORE', families, '-inf', ARGV[2])
-- The log's own last entry numbers the next one: a head lost on its own (evicted) cannot make
-- a number go backwards, and a log lost (a Redis that came back empty) starts a new epoch, so
-- that a node holding a number of the old log reads the whole set instead of skipping entries.
local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
local seq = 0
if #last == 0 or redis.call('HEXISTS', head, 'epoch') == 0 then
  redis.call('HSET', head, 'epoch', ARGV[3])
end
if #last > 0 then
  seq = tonumber(string.match(last[1][1], '%-(%d+)$'))
end
for i = 5, #ARGV do
  redis.call('ZADD', families, until_ms, ARGV[i])
  seq = seq + 1
  redis.call('XADD', log, 'MAXLEN', '~', ARGV[4], '0-' .. seq, 'f', ARGV[i], 'u', until_ms)
end
redis.call('HSET', head, 'seq', seq)
return seq
