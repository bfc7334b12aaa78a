-- Open a device's refresh family under an id chosen beforehand, once: a redemption sent again
-- with the same attempt opens the same device, and must not reset the one the first opened
-- (rotated since, or signed out).
-- KEYS[1] family   hash of the family
-- ARGV[1] ttl_s    the family's lifetime from now
-- ARGV[2] secret   the digest of its first secret (also among the fields)
-- ARGV[3..]        its fields, name and value in turn
-- Returns 1 when opened, 0 when the family existed already and still holds its first secret,
-- -1 when it existed and has rotated since (its browser had the first answer: a later resend is
-- stale, and answering the first secret again would sign that device out as a copied cookie).
-- Nothing is written but on 1.
local family = KEYS[1]
local ttl_s = tonumber(ARGV[1])
if redis.call('EXISTS', family) == 1 then
  if redis.call('HGET', family, 'secret') == ARGV[2] then return 0 end
  return -1
end
redis.call('HSET', family, unpack(ARGV, 3))
redis.call('EXPIRE', family, ttl_s)
return 1
