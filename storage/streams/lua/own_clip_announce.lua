-- Announces a clip a viewer stored (or was answered again) on the viewer's own channel, so the
-- viewer's other pages (another device, another tab) show it at once (server/active_feed.py sends
-- it to the user's following connections as an own_clip event). Nobody else follows that channel:
-- a note never reaches another viewer. Its own step, after the clip's (another hash slot: the
-- user's, where the channel lives, so that it is published on the shard that owns it).
--   KEYS[1]  the user's channel (Keys.active_session_channel): named as a key so the step runs
--            in the user's slot; nothing is stored under it
--   ARGV[1]  the announcement, JSON: {"own_clip": {"session_id", "clip"}}
-- Returns the number of this shard's subscribers it reached.
return redis.call('PUBLISH', KEYS[1], ARGV[1])
