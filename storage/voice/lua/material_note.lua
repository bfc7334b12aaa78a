-- Merges fields into one stored material (what became of a chat file's fetch: its chunk, or why
-- none) without publishing anything: the chunk itself is published as it is stored.
--   KEYS[1]  the session hash
--   KEYS[2]  the session's materials list
--   ARGV[1]  the material's id
--   ARGV[2]  where the material was stored in the list, a hint (0-based; -1: unknown)
--   ARGV[3]  the fields to merge into the material, a JSON object
-- Returns {index} or {false, code}: session_not_found, not_found (no such material).
local session_key = KEYS[1]
local materials_key = KEYS[2]
local material_id = ARGV[1]
local hint = tonumber(ARGV[2])
local fields_json = ARGV[3]

if redis.call('EXISTS', session_key) == 0 then
  return {false, 'session_not_found'}
end

local function merged_at(index, stored)
  local material = cjson.decode(stored)
  if material['material_id'] ~= material_id then
    return false
  end
  for key, value in pairs(cjson.decode(fields_json)) do
    material[key] = value
  end
  redis.call('LSET', materials_key, index, cjson.encode(material))
  return true
end

-- Materials are only ever appended (and deleted with their session): the hint is right but for
-- a material stored by a run whose answer was lost, which the scan below finds.
if hint >= 0 then
  local stored = redis.call('LINDEX', materials_key, hint)
  if stored and merged_at(hint, stored) then
    return {hint}
  end
end
local count = redis.call('LLEN', materials_key)
local page = 256
for start = 0, count - 1, page do
  local texts = redis.call('LRANGE', materials_key, start, start + page - 1)
  for offset, stored in ipairs(texts) do
    if merged_at(start + offset - 1, stored) then
      return {start + offset - 1}
    end
  end
end
return {false, 'not_found'}
