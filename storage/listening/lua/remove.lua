-- Deletes one listening session of the history (open or finished).
--   KEYS[1..12], ARGV[1..8]  see core/_event.lua and _history.lua
--   ARGV[9]  the listening session id
--   KEYS[13] the upload client ids put aside (clear.lua, upload.lua)
--   ARGV[10] how long an id put aside is kept (ms)
--   ARGV[11] how many ids deletions may put aside at most: past it the set starts again (it lives
--            a day after the last deletion, so one deleting every day kept every id for good)
-- An upload's client id is put aside, as a clear does: a resend of that upload (its ack lost)
-- must not bring it back, and kept with the uploads it grew with every one deleted.
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
if rec.client_id and redis.call('HGET', clients_key, rec.client_id) == rec.id then
  redis.call('HDEL', clients_key, rec.client_id)
  if redis.call('HLEN', KEYS[13]) >= tonumber(ARGV[11]) then
    redis.call('DEL', KEYS[13])
  end
  redis.call('HSET', KEYS[13], rec.client_id, rec.id)
  redis.call('PEXPIRE', KEYS[13], tonumber(ARGV[10]))
end
return {append_event(removed_event, cjson.encode({id = rec.id, item_id = rec.item_id, reason = 'deleted'}))}
