-- A page of the global session index for the listing of guests from before the index of guests
-- (GuestIndex.backfill), after the last session the page before read: by its rank while it is
-- still indexed at that time (a millisecond may hold more sessions than a page, and sessions
-- the sweep deletes meanwhile must not shift the page past unread ones), else from the start of
-- that time (its sessions read again: listing twice is harmless).
-- KEYS[1] sessions  sorted set session id -> creation time (ms)
-- ARGV[1] low       the last page's last creation time, or '-inf'
-- ARGV[2] after     the last page's last session id, or ''
-- ARGV[3] limit     sessions per page
-- Returns {session, time, session, time, ...}.
local sessions, low, after, limit = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
if after ~= '' then
  local score = redis.call('ZSCORE', sessions, after)
  if score and tonumber(score) == tonumber(low) then
    local rank = redis.call('ZRANK', sessions, after)
    return redis.call('ZRANGE', sessions, rank + 1, rank + limit, 'WITHSCORES')
  end
end
return redis.call('ZRANGEBYSCORE', sessions, low, '+inf', 'WITHSCORES', 'LIMIT', 0, limit)
