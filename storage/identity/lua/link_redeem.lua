-- Redeem a one-time link, in one step: the first redemption takes it; with an attempt id, the
-- link's key then holds that redemption for a short time (the hash of the attempt, the claims,
-- and the device it opens, chosen before any device is opened), so that the same page sending
-- it again, even at the same moment, is given that same device, never a second one.
-- KEYS[1] link     string: the link's claims (JSON), or the mark of its redemption (see below)
-- ARGV[1] attempt  sha256 hex of the redeeming page's attempt id, or '' (no resend possible)
-- ARGV[2] device   the id of the device this redemption opens, if it is the first
-- ARGV[3] grace_s  how long the same attempt may redeem it again
-- Returns {outcome, claims JSON, device}: outcome first | again; a link used, expired or unknown
-- (or redeemed again without the first one's attempt) is {false, 'unauthorized'} ("used").
local link = KEYS[1]
local attempt, device, grace_s = ARGV[1], ARGV[2], tonumber(ARGV[3])
local raw = redis.call('GET', link)
if not raw then return {false, 'unauthorized'} end
local record = cjson.decode(raw)
if record['redeemed'] then
  if attempt ~= '' and record['redeemed'] == attempt then
    return {'again', record['claims'], record['device']}
  end
  return {false, 'unauthorized'}
end
if attempt == '' then
  redis.call('DEL', link)
else
  -- exp 0: a node of the release before reads the mark as a login link whose asking token has
  -- expired (401), never as a link to redeem.
  local mark = cjson.encode({exp = 0, redeemed = attempt, device = device, claims = raw})
  redis.call('SET', link, mark, 'EX', grace_s)
end
return {'first', raw, device}
