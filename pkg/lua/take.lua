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
--        take; 0 checks without taking), mode (0 normal, 1 shadow, 2
--        quota: quota.Hit's Shadow and Quota; plus 3 × quota.Hit's Counting:
--        0 all or nothing, 1 always, 2 unless another hit is over).
-- Reply: { now, fits_1, remaining_1, reset_after_1, fits_2, ... }: now is
--        the time used (µs); per hit fits is 1 or 0, remaining the hits
--        left after it, reset_after µs (see quota.Decision). All integers.
-- Invariant: the decisions are exactly quota.EvaluateHit's, hits of one
--        key decided in order, each seeing the earlier ones quota.Chains
--        says it does. The batch is rejected, exactly as quota.Rejects
--        says, when a normal hit does not fit, or when it has quota hits
--        and none of them fits (shadow hits never reject). Exactly the hits
--        quota.Taken says are written: with the default counting, nothing
--        if the batch is rejected, else every hit that fits with n > 0 (a
--        shadow or quota hit that does not fit takes nothing); an 'always'
--        hit with n > 0 in every case; an 'unless' hit when it does not
--        fit, or when every hit of the batch fits. Counters are only ever
--        written with a TTL no shorter than quota.Evaluate's.
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
-- it) and returns fits, remaining, reset-after, the next state (w, c, p) if
-- the hit is taken in full, and its TTL.
local function decide(alg, set, w, c, p, requests, unit, burst, n)
  if alg == TOKEN_BUCKET then
    return token_bucket(set, w, c, now, unit, requests, burst, n)
  elseif alg == FIXED_WINDOW then
    return fixed_window(set, w, c, now, unit, requests, n)
  end
  return sliding_window(set, w, c, p, now, unit, requests, n)
end

-- debt_reset is quota.EvaluateHit's reset-after for a hit taken in full
-- although it does not fit: the wait until a hit of its size fits on the
-- state the charge left (nw, nc, np).
local function debt_reset(alg, nw, nc, np, requests, unit, burst, n)
  local _, _, reset = decide(alg, true, nw, nc, np, requests, unit, burst, n)
  return reset
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
  -- written if it takes something and fits, or is counted whatever it
  -- decides; otherwise nothing is. (In every mode: a lone normal or quota
  -- hit rejects the batch exactly when it does not fit, a shadow hit never
  -- does, and a lone hit that does not fit is the batch's only one.)
  local alg, requests, unit, burst, n, mode, counting = hit_args(1)
  if not (alg and requests and burst and n and mode) then
    return redis.error_reply('ERR floodgate take: bad arguments for hit 1')
  end
  local key = KEYS[1]
  local set, w, c, p = load(key, alg)
  local fits, remaining, reset, nw, nc, np, ttl = decide(alg, set, w, c, p, requests, unit, burst, n)
  if n > 0 and (fits == 1 or counting ~= ALL_OR_NOTHING) then
    if fits == 0 then
      reset = debt_reset(alg, nw, nc, np, requests, unit, burst, n)
    end
    store(key, alg, set, w, nw, nc, np, ttl)
  end
  return { now, fits, remaining, reset }
end

local reply = { now }
local nreply = 1
-- key -> its counter, an array (cheaper than named fields):
--   [1] key, [2] algorithm, [3] set, [4] w as read (for the TTL rule);
--   [5] set, [6] w, [7] c, [8] p after the hits decided so far;
--   [9] the TTL of the latest hit taken, false while none is;
--   [10] c, [11] p as read.
local counters = {}
local dirty = {}  -- counters to write, in first-taken order
local rejected = false
local all_fit = true
-- Whether the batch has quota hits, and whether one of them fits.
local quotas, quota_fits = false, false
-- Set when a hit counts other than all or nothing: then what is written is
-- settled per hit once the batch is decided, from these (by hit).
local counted = false
for i = 1, #KEYS do
  local m = ARGV[1 + i * ARGS_PER_HIT]
  if not (m == '0' or m == '1' or m == '2') then
    counted = true
    break
  end
end
local hit_ct, hit_fits, hit_counting, hit_state, hit_prior
if counted then
  hit_ct, hit_fits, hit_counting, hit_state, hit_prior = {}, {}, {}, {}, {}
end

for i = 1, #KEYS do
  local key = KEYS[i]
  local alg, requests, unit, burst, n, mode, counting = hit_args(i)
  if not (alg and requests and burst and n and mode) then
    return redis.error_reply('ERR floodgate take: bad arguments for hit ' .. i)
  end
  local ct = counters[key]
  if ct == nil then
    local set, w, c, p = load(key, alg)
    ct = { key, alg, set, w, set, w, c, p, false, c, p }
    counters[key] = ct
  end
  local fits, remaining, reset, nw, nc, np, ttl = decide(alg, ct[5], ct[6], ct[7], ct[8], requests, unit, burst, n)
  if counting ~= ALL_OR_NOTHING then
    if fits == 0 and n > 0 then
      reset = debt_reset(alg, nw, nc, np, requests, unit, burst, n)
    end
  end
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
  else
    all_fit = false
    if mode == NORMAL then
      rejected = true
    end
  end
  -- A check (n = 0) changes nothing a later read could tell apart, so it
  -- is not written. Later hits on the key see this one if it would be
  -- taken in a batch where every hit fits (quota.Chains).
  if n > 0 and (fits == 1 or counting ~= ALL_OR_NOTHING) then
    if counted then
      -- hit_prior: an earlier hit on the key chained into this decision.
      hit_ct[i], hit_fits[i], hit_counting[i], hit_prior[i] = ct, fits, counting, ct[9] ~= false
      hit_state[i] = { nw, nc, np, ttl }
    end
    if not ct[9] then
      dirty[#dirty + 1] = ct
    end
    ct[5], ct[6], ct[7], ct[8], ct[9] = true, nw, nc, np, ttl
  end
end

rejected = rejected or (quotas and not quota_fits)

if not counted then
  if rejected then
    return reply
  end
  for _, ct in ipairs(dirty) do
    store(ct[1], ct[2], ct[3], ct[4], ct[6], ct[7], ct[8], ct[9])
  end
  return reply
end

-- Some hit counts otherwise: write, per key, the effect of its hits that
-- quota.Taken says are taken, in order. When some hit is not taken, a
-- later hit on its key may have been decided on a state that counted it;
-- such a hit is applied again to the state the taken ones leave.
local exact = rejected or not all_fit
local final = {}
local order = {}
for i = 1, #KEYS do
  local ct = hit_ct[i]
  if ct then
    local taken
    if hit_counting[i] == ALWAYS then
      taken = true
    elseif hit_counting[i] == UNLESS_OTHER_OVER then
      taken = hit_fits[i] == 0 or all_fit
    else
      taken = not rejected
    end
    if taken then
      local st = hit_state[i]
      if exact and hit_prior[i] then
        local _, requests, unit, burst, n = hit_args(i)
        local base = final[ct]
        local _, nw, nc, np, ttl
        if base then
          _, _, _, nw, nc, np, ttl = decide(ct[2], true, base[1], base[2], base[3], requests, unit, burst, n)
        else
          _, _, _, nw, nc, np, ttl = decide(ct[2], ct[3], ct[4], ct[10], ct[11], requests, unit, burst, n)
        end
        st = { nw, nc, np, ttl }
      end
      if not final[ct] then
        order[#order + 1] = ct
      end
      final[ct] = st
    end
  end
end
for _, ct in ipairs(order) do
  local st = final[ct]
  store(ct[1], ct[2], ct[3], ct[4], st[1], st[2], st[3], st[4])
end
return reply
