-- Sets the user's display name and announces it on the user's channel, in one step: a node that
-- follows the user (server/active_feed.py) tells the user's connections there at once, and the
-- name they are told is the one stored.
--   KEYS[1]  the user's profile hash
--   ARGV[1]  the display name
--   ARGV[2]  the user id
--   ARGV[3]  the user's channel (Keys.active_session_channel: in the user's slot)
-- Returns 1.
local profile = KEYS[1]
local name, user_id, channel = ARGV[1], ARGV[2], ARGV[3]
redis.call('HSET', profile, 'name', name)
redis.call('PUBLISH', channel, cjson.encode({user_id = user_id, name = name}))
return 1
