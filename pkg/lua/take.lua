-- take.lua: decides one batch of hits, all or nothing, in one call.
--
-- (Sent to Redis after state.lua and the three algorithm files, as one
-- script with one hash.)
--
-- KEYS:  the counter of each hit, KEYS[i] for hit i. A key may appear more
--        than once; on Redis Cluster all keys share one slot.
-- ARGV:  ARGV[1] = '' to read Redis's TIME (the normal case: every sidecar
--        then agrees on one clock), or, in tests, the time to decide at in
--        µs since the Unix epoch (TTLs then get 60 s of slack, see below);
--        then 6 entries per hit i, from ARGV[2 + 6(i-1)]:
--        algorithm (0 sliding_window, 1 fixed_window, 2 token_bucket),
--        requests per unit, unit (µs), burst (0 = requests), n (hits to
--        take; 0 checks without taking), mode ('0' normal, '1' shadow,
--        '2' quota: quota.Hit's Shadow and Quota).
-- Reply: { now, fits_1, remaining_1, reset_after_1, fits_2, ... }: now is
--        the time used (µs); per hit fits is 1 or 0, remaining the hits
--        left after it, reset_after µs (see quota.Decision). All integers.
-- Invariant: the decisions are exactly quota.Evaluate's, hits of one key
--        decided in order, each seeing the ones before it. The batch is
--        rejected, exactly as quota.Rejects says, when a normal hit does
--        not fit, or when it has quota hits and none of them fits (shadow
--        hits never reject). A rejected batch writes nothing; otherwise
--        every hit that fits with n > 0 is taken (a shadow or quota hit
--        that does not fit takes nothing). Counters are only ever written
--        with a TTL no shorter than quota.Evaluate's.
--
-- A caller that splits one request over several calls (Redis Cluster,
-- one call per slot) sends its quota hits as shadow: whether the request
-- is rejected by quota then depends on every call's answers, which only
-- the caller sees (it refunds the calls that took when it is).
--
-- The script writes only after reading TIME, which Redis 7 replicates as
-- effects (the writes), so replicas and the AOF see the same state.

if #ARGV ~= 1 + ARGS_PER_HIT * #KEYS then
  return redis.error_reply('ERR floodgate take: want ' .. (1 + ARGS_PER_HIT * #KEYS) ..
    ' arguments for ' .. #KEYS .. ' keys, got ' .. #ARGV)
end

local now
-- Redis expires keys by its own clock. When the time is pinned, that clock
-- is not the one the TTLs are computed on, so they get a minute more: a TTL
-- longer than needed changes no answer (past quota's TTL a stored counter
-- and a missing one decide alike), one cut short by the real clock would.
local ttl_slack = 0
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
  if not now then
    return redis.error_reply('ERR floodgate take: bad time ' .. ARGV[1])
  end
  ttl_slack = 60000000
end

-- decide runs a hit's algorithm on a counter (set, w, c, p as load returns
-- it) and returns fits, remaining, reset-after, the next state (w, c, p)
-- and its TTL.
local function decide(alg, set, w, c, p, requests, unit, burst, n)
  if alg == TOKEN_BUCKET then
    return token_bucket(set, w, c, now, unit, requests, burst, n)
  elseif alg == FIXED_WINDOW then
    return fixed_window(set, w, c, now, unit, requests, n)
  end
  return sliding_window(set, w, c, p, now, unit, requests, n)
end

-- store writes a counter's next state (w, c, p, with its TTL); set0 and w0
-- are the counter as it was read.
local function store(key, alg, set0, w0, w, c, p, ttl)
  local value = encode(alg, w, c, p)
  if alg ~= TOKEN_BUCKET and set0 and w0 == w then
    -- Same window as stored: its TTL, set by the window's first write,
    -- already ends where this one would.
    redis.call('SET', key, value, 'KEEPTTL')
  else
    -- PX takes ms; round up so the counter never expires early.
    redis.call('SET', key, value, 'PX', math.ceil((ttl + ttl_slack) / 1000))
  end
end

if #KEYS == 1 then
  -- One hit, the common case: no key can repeat, so no bookkeeping. It is
  -- written if it fits and takes something; otherwise nothing is. (In
  -- every mode: a lone normal or quota hit rejects the batch exactly when
  -- it does not fit, and a shadow hit never does.)
  local alg, requests, unit, burst, n, mode = hit_args(1)
  if not (alg and requests and burst and n) or not (mode == NORMAL or mode == SHADOW or mode == QUOTA) then
    return redis.error_reply('ERR floodgate take: bad arguments for hit 1')
  end
  local key = KEYS[1]
  local set, w, c, p = load(key, alg)
  local fits, remaining, reset, nw, nc, np, ttl = decide(alg, set, w, c, p, requests, unit, burst, n)
  if fits == 1 and n > 0 then
    store(key, alg, set, w, nw, nc, np, ttl)
  end
  return { now, fits, remaining, reset }
end

local reply = { now }
local nreply = 1
-- key -> its counter, an array (cheaper than named fields):
--   [1] key, [2] algorithm, [3] set, [4] w as read (for the TTL rule);
--   [5] set, [6] w, [7] c, [8] p after the hits decided so far;
--   [9] the TTL of the latest hit taken, false while none is.
local counters = {}
local dirty = {}  -- counters to write, in first-taken order
local rejected = false
-- Whether the batch has quota hits, and whether one of them fits.
local quotas, quota_fits = false, false

for i = 1, #KEYS do
  local key = KEYS[i]
  local alg, requests, unit, burst, n, mode = hit_args(i)
  if not (alg and requests and burst and n) or not (mode == NORMAL or mode == SHADOW or mode == QUOTA) then
    return redis.error_reply('ERR floodgate take: bad arguments for hit ' .. i)
  end
  local ct = counters[key]
  if ct == nil then
    local set, w, c, p = load(key, alg)
    ct = { key, alg, set, w, set, w, c, p, false }
    counters[key] = ct
  end
  local fits, remaining, reset, nw, nc, np, ttl = decide(alg, ct[5], ct[6], ct[7], ct[8], requests, unit, burst, n)
  reply[nreply + 1] = fits
  reply[nreply + 2] = remaining
  reply[nreply + 3] = reset
  nreply = nreply + 3
  if mode == QUOTA then
    quotas = true
  end
  if fits == 1 then
    if mode == QUOTA then
      quota_fits = true
    end
    -- A check (n = 0) changes nothing a later read could tell apart, so it
    -- is not written.
    if n > 0 then
      if not ct[9] then
        dirty[#dirty + 1] = ct
      end
      ct[5], ct[6], ct[7], ct[8], ct[9] = true, nw, nc, np, ttl
    end
  elseif mode == NORMAL then
    rejected = true
  end
end

if rejected or (quotas and not quota_fits) then
  return reply
end

for _, ct in ipairs(dirty) do
  store(ct[1], ct[2], ct[3], ct[4], ct[6], ct[7], ct[8], ct[9])
end
return reply
