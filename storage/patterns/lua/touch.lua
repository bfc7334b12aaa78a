-- Reads a pattern session for a load and marks it accessed in the same step, so that the
-- orphan flag is decided from the access time *before* this load (a load revives an orphan).
-- Access times are bookkeeping, not a change of the pattern: nothing is logged, and a load
-- never moves the session's offset (its ETag).
--   KEYS[1]  the session hash
--   KEYS[2]  the session's log metadata hash
--   ARGV[1]  the kind ('pattern')
--   ARGV[2]  now, unix ms; '' reads without touching
-- Returns {flat HGETALL as it was before the touch, epoch, offset}, or {} when there is no
-- pattern session with that id.
local session_key = KEYS[1]
local log_meta_key = KEYS[2]
local kind = ARGV[1]
local now_ms = ARGV[2]

if redis.call('HGET', session_key, 'kind') ~= kind then
  return {}
end
local fields = redis.call('HGETALL', session_key)
if now_ms ~= '' then
  redis.call('HSET', session_key, 'last_accessed_at', now_ms)
end
local meta = redis.call('HMGET', log_meta_key, 'epoch', 'offset')
return {fields, meta[1] or '', meta[2] or '0'}
