-- Empties the dead-letter list when it is the list the operator saw: the count they confirmed
-- and, when given, the fingerprint of its newest entry. The count alone let a letter buried
-- after they looked go unseen (one discarded by another operator meanwhile kept the count): a
-- new letter is pushed at the head, so the head says whether one came (audit "adminhostile").
-- An empty list is answered as emptied: a discard of all repeated after its answer was lost
-- finds nothing left, which is what was asked.
--   KEYS[1]  the dead-letter list
--   ARGV[1]  the count the operator confirmed
--   ARGV[2]  the newest entry's fingerprint as listed (storage/dead_letters.py fingerprint:
--            the first 16 hex digits of its text's SHA-1), or '' to check the count only
-- Returns the number of entries dropped; {false, 'conflict', '<count now> <fingerprint now>'}
-- when the list differs.
local dead_key = KEYS[1]
local confirmed = tonumber(ARGV[1])
local newest = ARGV[2]

local count = redis.call('LLEN', dead_key)
if count == 0 then
  return 0
end
local head = string.sub(redis.sha1hex(redis.call('LINDEX', dead_key, 0)), 1, 16)
if count ~= confirmed or (newest ~= '' and newest ~= head) then
  return {false, 'conflict', tostring(count) .. ' ' .. head}
end
redis.call('DEL', dead_key)
return count
