-- Tells a stream's audience session (the log viewer pages follow) that the owner changed one
-- viewer's clips or their block: the event names the viewer by tag only, and that viewer's
-- page reads its own clips again (GET .../clips/mine), so no note or other viewer's clip goes to
-- the whole audience. Runs after the stream's own step, as its own step (another session,
-- another hash slot); the events are hints, so two of them landing in either order is harmless.
--   KEYS[1..2], ARGV[1..5]  see _event.lua
--   KEYS[3]  the audience session hash
--   ARGV[6]  event type (clips_changed, viewer_blocked)
--   ARGV[7]  its data, JSON (made by the caller)
-- Returns {offset} or {false, 'session_not_found'}.
if redis.call('HGET', KEYS[3], 'kind') ~= 'stream_audience' then
  return {false, 'session_not_found'}
end
return {append_event(ARGV[6], ARGV[7])}
