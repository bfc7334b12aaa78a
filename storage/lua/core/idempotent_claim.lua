-- Claims an Idempotency-Key for one caller on one route (storage/idempotency.py), keeping at
-- most ARGV[3] keys per caller and route: the new claim is listed in the caller's index, and past
-- the bound the oldest listed keys (their claims or stored answers) are dropped, oldest first.
-- One step, so concurrent claims of one caller cannot overshoot the bound. A key that is there
-- already is not claimed again: its value is returned (empty: its first request still runs).
--   KEYS[1]  the key's answer (or claim)
--   KEYS[2]  the caller's index on this route: answer keys scored by claim time (ms)
--   ARGV[1]  the claim's lifetime, ms
--   ARGV[2]  an answer's lifetime, ms (an index entry older than this names nothing)
--   ARGV[3]  how many keys the caller may hold on this route
-- The claim's generation is the time its key was first claimed while the index has held it: a
-- retry of a request whose node died (its claim ran out, no answer stored) or whose request failed
-- after it may have made something (its claim given back, its index entry kept) keeps the first
-- claim's time, so it derives the same ids for the objects it creates (storage/idempotency.py)
-- and finds those the first run made instead of making them twice. A key given back whole (a
-- refusal that made nothing) or dropped from the index gets a new generation when it is claimed
-- again (a new request).
-- Returns {1, generation, again} when claimed (again: 1 when the index held the key already, a
-- retry of the same request), else {0, the stored value}.
if not redis.call('SET', KEYS[1], '', 'NX', 'PX', ARGV[1]) then
  return {0, redis.call('GET', KEYS[1])}
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[2]))
local held = redis.call('ZSCORE', KEYS[2], KEYS[1])
if held then
  -- Claimed again after its claim ran out or was given back kept: the same request, in its
  -- first place in the order.
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {1, held, 1}
end
-- Scores only grow (claims in one millisecond get the next ones): "oldest" is the claim order,
-- never the order of key names among equal scores, so a new claim is never the one dropped.
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if last[2] and tonumber(last[2]) >= now then
  now = tonumber(last[2]) + 1
end
redis.call('ZADD', KEYS[2], now, KEYS[1])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
  -- The dropped keys share KEYS[1]'s hash tag (the caller's): one slot on Redis Cluster.
  local dropped = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #dropped, 2 do
    redis.call('DEL', dropped[i])
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {1, tostring(now), 0}
