-- Finalizes the history's open sessions whose player went silent (a crash, a closed tab) at
-- their last written update, and says when the next one falls due.
--   KEYS[1..12], ARGV[1..8]  see core/_event.lua and _history.lua (ARGV[6] is unused: the
--                            server sweeps on nobody's behalf)
--   ARGV[9]   silence after which an open session is finalized, ms
--   ARGV[10]  minimum session length, ms
-- Returns {sessions finalized or deleted, next due time in ms or ''}.
local silence_ms = tonumber(ARGV[9])
local min_ms = tonumber(ARGV[10])

local swept = 0
local next_due = nil
local open = redis.call('HGETALL', open_key)
for i = 1, #open, 2 do
  local rec = load(open[i + 1])
  if not rec then
    redis.call('HDEL', open_key, open[i])
  elseif now_ms - rec.written_at >= silence_ms then
    finalize(rec, rec.ended_at, nil, 'silent', min_ms)
    swept = swept + 1
  else
    local due = rec.written_at + silence_ms
    if not next_due or due < next_due then
      next_due = due
    end
  end
end
return {swept, next_due and tostring(next_due) or ''}
