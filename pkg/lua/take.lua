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
--        take; 0 checks without taking), shadow ('1' or '0').
-- Reply: { now, fits_1, remaining_1, reset_after_1, fits_2, ... }: now is
--        the time used (µs); per hit fits is 1 or 0, remaining the hits
--        left after it, reset_after µs (see quota.Decision). All integers.
-- Invariant: the decisions are exactly quota.Evaluate's, hits of one key
--        decided in order, each seeing the ones before it. If any hit
--        that is not in shadow mode does not fit, nothing is written;
--        otherwise every hit that fits with n > 0 is taken. Counters are
--        only ever written with a TTL no shorter than quota.Evaluate's.
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

local reply = { now }
local stored = {}  -- key -> state as read from Redis
local current = {} -- key -> state after the hits decided so far
local algs = {}    -- key -> algorithm
local ttls = {}    -- key -> TTL (µs) of its latest next state
local dirty = {}   -- keys to write, in first-taken order
local rejected = false

for i = 1, #KEYS do
  local key = KEYS[i]
  local alg, requests, unit, burst, n, shadow = hit_args(i)
  if not (alg and requests and burst and n) then
    return redis.error_reply('ERR floodgate take: bad arguments for hit ' .. i)
  end
  local st = current[key]
  if st == nil then
    st = load(key, alg)
    stored[key], current[key], algs[key] = st, st, alg
  end
  local fits, remaining, reset, nxt, ttl
  if alg == TOKEN_BUCKET then
    fits, remaining, reset, nxt, ttl = token_bucket(st, now, unit, requests, burst, n)
  elseif alg == FIXED_WINDOW then
    fits, remaining, reset, nxt, ttl = fixed_window(st, now, unit, requests, n)
  else
    fits, remaining, reset, nxt, ttl = sliding_window(st, now, unit, requests, n)
  end
  reply[#reply + 1] = fits
  reply[#reply + 1] = remaining
  reply[#reply + 1] = reset
  if fits == 1 then
    -- A check (n = 0) changes nothing a later read could tell apart, so it
    -- is not written.
    if n > 0 then
      if not ttls[key] then
        dirty[#dirty + 1] = key
      end
      current[key], ttls[key] = nxt, ttl
    end
  elseif not shadow then
    rejected = true
  end
end

if rejected then
  return reply
end

for _, key in ipairs(dirty) do
  local st, alg, old = current[key], algs[key], stored[key]
  local value = encode(st, alg)
  if alg ~= TOKEN_BUCKET and old.set and old.w == st.w then
    -- Same window as stored: its TTL, set by the window's first write,
    -- already ends where this one would.
    redis.call('SET', key, value, 'KEEPTTL')
  else
    -- PX takes ms; round up so the counter never expires early.
    redis.call('SET', key, value, 'PX', math.ceil((ttls[key] + ttl_slack) / 1000))
  end
end
return reply
