-- Drops one dead letter, once: the entry leaves the list and a mark says it was discarded, so a
-- press repeated after its answer was lost is answered as the first was.
--   KEYS[1]  the dead-letter list (job JSON, newest first)
--   KEYS[2]  the mark of how the dead letter was settled (a string with a TTL)
--   ARGV[1]  the entry's exact text in the list ('' when the caller did not find it)
--   ARGV[2]  how long the mark is kept, ms
-- Returns {1, 0} when dropped now; {1, 1, <how it was settled>} when it had been settled
-- (discarded, or retried: either way it is no longer in the list); {false, 'not_found'} otherwise.
local dead_key = KEYS[1]
local mark_key = KEYS[2]
local entry = ARGV[1]
local mark_ms = ARGV[2]

if entry ~= '' and redis.call('LREM', dead_key, 1, entry) > 0 then
  redis.call('SET', mark_key, 'discarded', 'PX', mark_ms)
  return {1, 0}
end
local mark = redis.call('GET', mark_key)
if mark then
  return {1, 1, mark}
end
return {false, 'not_found'}
