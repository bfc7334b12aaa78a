-- Touches nothing: a process starting runs it once to see that its Redis user may load and run
-- scripts (storage/redis_fitness.py).
--   ARGV[1]  any value, given back
-- Returns ARGV[1].
return ARGV[1]
