-- Ends a sweep lease: the history is due again at `next_due`, or leaves the zset when it has
-- no open session. A report that opened a session meanwhile re-scored it (ZADD): then the
-- entry is only brought forward, never removed.
--   KEYS[1]  the due zset
--   ARGV[1]  the history id
--   ARGV[2]  the lease end this node set, ms
--   ARGV[3]  next due time, ms, or '' when nothing is open
-- Returns 1 when the entry was changed, else 0.
local due_key = KEYS[1]
local history_id = ARGV[1]
local lease_until = tonumber(ARGV[2])
local next_due = ARGV[3]

local score = redis.call('ZSCORE', due_key, history_id)
if score and tonumber(score) ~= lease_until then
  if next_due ~= '' then
    redis.call('ZADD', due_key, 'LT', next_due, history_id)
  end
  return 0
end
if not score then
  return 0
end
if next_due == '' then
  redis.call('ZREM', due_key, history_id)
else
  redis.call('ZADD', due_key, next_due, history_id)
end
return 1
