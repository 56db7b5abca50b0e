-- token_bucket.lua: quota.Evaluate's token bucket, line for line.
--
-- The bucket holds up to capacity (burst, or requests when burst is 0)
-- tokens and refills requests tokens per unit, fractions kept. A hit of n
-- fits while tokens + EPSILON >= n. The TTL is the time until the bucket is
-- full again plus a second: past it a missing counter (a full bucket) means
-- the same as the stored one. It moves with every write, so it is set on
-- every write.
--
-- Takes the counter as load returns it (c holds the tokens); returns fits
-- (0/1), remaining, reset-after (µs), the next state if the hit is taken in
-- full, fitting or not (w, c, p; p is unused), and its TTL (µs).

-- refill_micros is quota's refillMicros: the whole µs, rounded up, that
-- refill tokens at requests per unit (multiplying by unit first, as quota
-- does, so that a whole number on paper is not rounded up by one).
local function refill_micros(tokens, requests, unit)
  -- Capped at quota's maxWait (100 years), so that a debt from an absurd
  -- charge stays a sane time.
  return math.min(math.ceil(tokens * unit / requests), 3153600000000000)
end

local function token_bucket(set, w, c, now, unit, requests, burst, n)
  local capacity = requests
  if burst > 0 then
    capacity = burst
  end
  -- Refill rate in tokens per µs.
  local rate = requests / unit
  local tokens = capacity
  if set then
    tokens = c
    local elapsed = now - w
    if elapsed > 0 then
      tokens = tokens + elapsed * rate
    end
    if tokens > capacity then
      tokens = capacity
    end
  end
  if requests == 0 then
    -- Nothing ever refills: report one unit, as the window algorithms do;
    -- a check (n = 0) takes nothing, so it fits, with nothing left.
    local fits = 0
    if n == 0 then
      fits = 1
    end
    return fits, 0, unit, now, tokens, 0, unit
  end
  if tokens + EPSILON >= n then
    local left = tokens - n
    if left < 0 then
      left = 0
    end
    local until_full = refill_micros(capacity - left, requests, unit)
    return 1, math.floor(left + EPSILON), until_full, now, left, 0, until_full + 1000000
  end
  -- Taken in full anyway (overdraw), the bucket goes below zero: a debt
  -- that refills at the same rate before anything fits again.
  local owed = tokens - n
  local until_full = refill_micros(capacity - owed, requests, unit)
  if n > capacity then
    -- Never fits, however long one waits: report one unit, as for a limit
    -- of 0, rather than a wait after which it still fails.
    return 0, 0, unit, now, owed, 0, until_full + 1000000
  end
  return 0, 0, refill_micros(n - tokens, requests, unit), now, owed, 0, until_full + 1000000
end
