-- Record revoked device families: in the set every node reads whole at its start, and in the
-- log each node reads from where it stopped (one small read per poll instead of the whole set).
-- KEYS[1] families  sorted set family id -> until when (ms) its access tokens are refused
-- KEYS[2] log       stream of the revocations: f (family id), u (until, ms), n (1, 2, ... no gap)
-- KEYS[3] head      hash: seq (the log's last n), last (its entry id), epoch (names this log)
-- ARGV[1] until_ms  refused until then
-- ARGV[2] now_ms    entries of the set that expired are dropped
-- ARGV[3] epoch     the epoch taken when the log is new (or its head was lost)
-- ARGV[4] max_len   how many entries the log keeps, about (a node further behind reads the set)
-- ARGV[5..]         the family ids
-- Returns the log's last n.
local families, log, head = KEYS[1], KEYS[2], KEYS[3]
local until_ms = ARGV[1]
redis.call('ZREMRANGEBYSCORE', families, '-inf', ARGV[2])
-- The log's own last entry numbers the next one (a head evicted on its own cannot make a
-- number go backwards). A log that is gone (a Redis that came back empty) starts a new epoch:
-- a node holding a place in the old one reads the whole set instead of skipping entries. A
-- failover to a replica that had not received the last entries keeps the epoch, and numbers
-- again what a node may have read; the entry ids (times) then differ from the ones it read,
-- which it notices (Identities.revoked_since).
local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
local seq = 0
if #last == 0 or redis.call('HEXISTS', head, 'epoch') == 0 then
  redis.call('HSET', head, 'epoch', ARGV[3])
end
if #last > 0 then
  local fields = last[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'n' then seq = tonumber(fields[i + 1]) end
  end
end
local id = ''
for i = 5, #ARGV do
  redis.call('ZADD', families, until_ms, ARGV[i])
  seq = seq + 1
  id = redis.call('XADD', log, 'MAXLEN', '~', ARGV[4], '*', 'f', ARGV[i], 'u', until_ms, 'n', seq)
end
redis.call('HSET', head, 'seq', seq, 'last', id)
return seq
