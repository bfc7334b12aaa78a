-- Gives an Idempotency-Key claim back (storage/idempotency.py): its request failed, so a retry
-- runs again at once. Only a claim (the empty value) is deleted, never a stored answer: a run whose
-- claim ran out while it stalled (its node starved, its renewals lost) may fail after a retry took
-- the key over and stored its answer; deleting that answer, and with it the key's place in the
-- index, had the next retry run as a new request with new ids, making the object a second time.
--   KEYS[1]  the key's claim (or answer)
--   KEYS[2]  the caller's index on this route (one slot with KEYS[1]: the caller's hash tag)
--   ARGV[1]  '1': the key is given back whole (out of the index too, a new request when claimed
--            again); '0': its index entry stays, so a retry derives the same ids
-- Returns 1 when a claim was given back, 0 when the key held an answer or nothing.
if redis.call('GET', KEYS[1]) ~= '' then
  return 0
end
redis.call('DEL', KEYS[1])
if ARGV[1] == '1' then
  redis.call('ZREM', KEYS[2], KEYS[1])
end
return 1
