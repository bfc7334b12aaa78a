-- Deletes the whole listening history (sessions, open sessions, totals, item metadata and
-- upload ids); the history session itself and its log stay, so every tab hears it.
--   KEYS[1..12], ARGV[1..8]  see core/_event.lua and _history.lua
--   ARGV[9]  event type of the clearing
-- Returns {offset, sessions removed} or {false, code}.
local cleared_event = ARGV[9]

local refused = owner_refusal()
if refused then
  return {false, refused}
end
local count = redis.call('HLEN', records_key)
redis.call('DEL', records_key, by_start_key, by_item_key, items_key, meta_key, open_key, last_key,
  stats_key, clients_key)
return {append_event(cleared_event, cjson.encode({removed = count})), count}
