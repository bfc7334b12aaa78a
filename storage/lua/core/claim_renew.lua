-- Renews a pending Idempotency-Key claim (storage/idempotency.py) while its request runs: only a
-- claim (the empty value) is renewed, never a stored answer (its own day-long lifetime) nor a
-- key that is gone (its request's answer was given back, or the claim ran out).
--   KEYS[1]  the claim's key
--   ARGV[1]  the claim's lifetime from now, ms
if redis.call('GET', KEYS[1]) == '' then
  return redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 0
