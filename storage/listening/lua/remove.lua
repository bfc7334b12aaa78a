-- Deletes one listening session of the history (open or finished).
--   KEYS[1..12], ARGV[1..8]  see core/_event.lua and _history.lua
--   ARGV[9]  the listening session id
-- Returns {offset} or {false, code}.
local id = ARGV[9]

local refused = owner_refusal()
if refused then
  return {false, refused}
end
local rec = load(id)
if not rec then
  return {false, 'not_found'}
end
remove(rec)
return {append_event(removed_event, cjson.encode({id = rec.id, item_id = rec.item_id, reason = 'deleted'}))}
