-- The whole revoked set and the log position it stands for, in one step (a node's first read,
-- and its read after it fell behind the log or the log was replaced).
-- KEYS[1] families  sorted set family id -> until when (ms)
-- KEYS[2] head      hash: seq, last, epoch (see revoked_add.lua)
-- ARGV[1] now_ms    expired entries are dropped first
-- Returns {seq, last, epoch, {family, until, family, until, ...}}.
local families, head = KEYS[1], KEYS[2]
redis.call('ZREMRANGEBYSCORE', families, '-inf', ARGV[1])
local position = redis.call('HMGET', head, 'seq', 'last', 'epoch')
return {position[1] or '0', position[2] or '', position[3] or '', redis.call('ZRANGE', families, 0, -1, 'WITHSCORES')}
