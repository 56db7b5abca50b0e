-- refund.lua: gives back what an admitted take.lua call took.
--
-- (Sent to Redis after state.lua, as one script.)
--
-- Used on Redis Cluster only, when a request's counters span slots: each
-- slot's take.lua call is atomic, and when one slot rejects the request the
-- slots that admitted it are refunded, so that a rejected request ends up
-- consuming nothing.
--
-- KEYS:  the counters to refund, one per hit that was taken (fits and n > 0
--        in a batch that was written); a key may repeat.
-- ARGV:  ARGV[1] = the now that take.lua replied with (µs); then the same
--        6 entries per hit as take.lua (the mode is ignored).
-- Reply: the number of hits refunded (a counter that has since expired or
--        moved past the window of the take has nothing to give back).
-- Invariant: a counter never goes below zero hits nor above a full bucket,
--        and keeps its TTL: the refund never makes a key outlive the TTL
--        the take gave it, so no TTL is ever shorter than its state needs
--        (more quota means an earlier "full"/expiry, never a later one).

if #ARGV ~= 1 + ARGS_PER_HIT * #KEYS then
  return redis.error_reply('ERR floodgate refund: want ' .. (1 + ARGS_PER_HIT * #KEYS) ..
    ' arguments for ' .. #KEYS .. ' keys, got ' .. #ARGV)
end
local now = tonumber(ARGV[1])
if not now then
  return redis.error_reply('ERR floodgate refund: bad time ' .. ARGV[1])
end

local refunded = 0
for i = 1, #KEYS do
  local key = KEYS[i]
  local alg, requests, unit, burst, n = hit_args(i)
  if not (alg and requests and burst and n) then
    return redis.error_reply('ERR floodgate refund: bad arguments for hit ' .. i)
  end
  local set, w, c, p = load(key, alg)
  local changed = false
  if set and n > 0 then
    if alg == TOKEN_BUCKET then
      local capacity = requests
      if burst > 0 then
        capacity = burst
      end
      -- Refill is linear, so adding n back now equals never having taken
      -- it, up to the cap a full bucket stops at.
      c = math.min(capacity, c + n)
      changed = true
    else
      local start = now - math.fmod(now, unit)
      if w == start then
        c = math.max(0, c - n)
        changed = true
      elseif alg == SLIDING_WINDOW and w == start + unit then
        -- The window rolled over since the take: the hits are now prev.
        p = math.max(0, p - n)
        changed = true
      end
    end
  end
  if changed then
    redis.call('SET', key, encode(alg, w, c, p), 'KEEPTTL')
    refunded = refunded + 1
  end
end
return refunded
