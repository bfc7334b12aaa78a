-- One step of building a stream session's own index (each viewer's clips as a range, see
-- keys.stream_own_index) from its clips, in pages: for a session whose clips were stored
-- without it (before it existed, or by a node of the previous release) or whose index lost
-- count. Each call adds the entries of one HSCAN page of the clips hash (a few ms of Redis);
-- the clip scripts keep the entries of clips added or removed meanwhile in their own steps, so
-- once the scan is through the index holds every clip, unless the hash moved to another node
-- between two calls (each Redis seeds its hash function: the cursor carried over skips fields
-- there). The last call says whether the index now holds as many clips as the hash: the
-- caller builds again when it does not.
--   KEYS[1]  the session hash
--   KEYS[2]  the session's clips hash (clip id -> clip JSON)
--   KEYS[3]  the session's own index
--   ARGV[1]  'start', or the HSCAN cursor of the clips to go on from
--   ARGV[2]  clips indexed per call
-- Returns {next cursor ('0': the scan is through), '1' when the index holds as many entries as
-- the clips hash, else '0'}.
local clips_key = KEYS[2]
local index_key = KEYS[3]
local cursor = ARGV[1]
if cursor == 'start' then
  -- More entries than clips: some name clips removed without their entry (a node of the
  -- previous release deleted them). Dropped (freed off the main thread) and built anew.
  if redis.call('ZCARD', index_key) > redis.call('HLEN', clips_key) then
    redis.call('UNLINK', index_key)
  end
  cursor = '0'
end
local salt = redis.call('HGET', KEYS[1], 'tag_salt') or ''
local scanned = redis.call('HSCAN', clips_key, cursor, 'COUNT', tonumber(ARGV[2]))
local found = scanned[2]
for i = 2, #found, 2 do
  local clip = cjson.decode(found[i])
  local tag = clip.viewer_tag or string.sub(redis.sha1hex(salt .. '|' .. tostring(clip.submitted_by)), 1, 12)
  redis.call('ZADD', index_key, 0, tag .. ':' .. string.format('%015d', tonumber(clip.seq) or 0) .. ':' .. found[i - 1])
end
local whole = redis.call('ZCARD', index_key) == redis.call('HLEN', clips_key)
return {scanned[1], whole and '1' or '0'}
