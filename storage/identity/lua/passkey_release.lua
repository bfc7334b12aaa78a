-- Forget who a credential id belongs to, only if it still belongs to the user removing it: a
-- record of the same credential left with another user (before registrations checked the id)
-- must not unlink its owner's passkey.
-- KEYS[1] owner    string: the user the credential id signs in as
-- ARGV[1] user_id  the user removing their passkey
-- Returns 1 when forgotten, 0 when it belongs to someone else (or nobody).
local owner = KEYS[1]
local user_id = ARGV[1]
if redis.call('GET', owner) ~= user_id then return 0 end
redis.call('DEL', owner)
return 1
