-- Touches nothing: a process starting runs it once to see that its Redis user may load and run
-- scripts (storage/redis_fitness.py).
-- Returns 1.
return 1
