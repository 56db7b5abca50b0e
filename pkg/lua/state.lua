-- state.lua: shared by take.lua and refund.lua (prepended to both).
--
-- A counter is one Redis string; the algorithm (which is part of the key)
-- decides its layout. Numbers are written as %.17g prints them, which reads
-- back into the very same double, so a fractional token count survives a
-- round trip through Redis bit for bit, as it would in the in-memory
-- backend.
--
--   fixed_window:   "<window start µs>:<hits in window>"
--   sliding_window: "<window start µs>:<hits in window>:<hits in previous window>"
--   token_bucket:   "<last update µs>:<tokens then>"
--
-- In the scripts a counter is four values, set, w, c, p (see load), never a
-- table: these scripts run on every request, and a table per counter was a
-- good part of their cost.
--
-- Algorithm codes are quota.Algorithm's values.
local SLIDING_WINDOW, FIXED_WINDOW, TOKEN_BUCKET = 0, 1, 2

-- EPSILON is quota's epsilon: it absorbs float rounding so that exact
-- arithmetic on paper never rejects a hit.
local EPSILON = 1e-9

-- ARGS_PER_HIT is the number of ARGV entries per key after ARGV[1].
local ARGS_PER_HIT = 6

-- load reads a counter: set, then the fields of its layout, w (window start
-- or last update), c (hits in window, or tokens) and, for a sliding window,
-- p (hits in the previous window). set is false, and the fields 0, when it
-- is missing or unreadable (an unreadable value is treated as a fresh
-- counter and overwritten).
local function load(key, alg)
  local v = redis.call('GET', key)
  if not v then
    return false, 0, 0, 0
  end
  if alg == SLIDING_WINDOW then
    local w, c, p = string.match(v, '^([^:]+):([^:]+):([^:]+)$')
    w, c, p = tonumber(w), tonumber(c), tonumber(p)
    if w and c and p then
      return true, w, c, p
    end
  else
    local w, c = string.match(v, '^([^:]+):([^:]+)$')
    w, c = tonumber(w), tonumber(c)
    if w and c then
      return true, w, c, 0
    end
  end
  return false, 0, 0, 0
end

-- whole tells whether %d prints x as %.17g does: for an integer below 1e17
-- (the digits %.17g prints in full) other than -0 (which %.17g signs). A
-- double's %d is several times cheaper than its %.17g, and window starts
-- and hit counts are always such integers.
local function whole(x)
  return x % 1 == 0 and x < 1e17 and x > -1e17 and (x ~= 0 or 1 / x > 0)
end

-- encode writes a counter in its layout, every field exactly as %.17g
-- prints it.
local function encode(alg, w, c, p)
  if alg == SLIDING_WINDOW then
    if whole(w) and whole(c) and whole(p) then
      return string.format('%d:%d:%d', w, c, p)
    end
    return string.format('%.17g:%.17g:%.17g', w, c, p)
  end
  if whole(w) then
    if whole(c) then
      return string.format('%d:%d', w, c)
    end
    return string.format('%d:%.17g', w, c)
  end
  return string.format('%.17g:%.17g', w, c)
end

-- Modes of a hit: quota.Hit's Shadow and Quota. Its last ARGV entry is
-- mode + 3 * counting, counting being quota.Hit's Counting (ALL_OR_NOTHING,
-- ALWAYS, UNLESS_OTHER_OVER): '0', '1' and '2' are the default counting.
local NORMAL, SHADOW, QUOTA = 0, 1, 2
local ALL_OR_NOTHING, ALWAYS, UNLESS_OTHER_OVER = 0, 1, 2

-- hit_args reads the i-th hit's ARGV entries. The common values of
-- algorithm, burst, n and mode are matched as strings first: comparing Lua
-- strings is one pointer comparison, tonumber a strtod. It returns the
-- algorithm, requests, unit, burst, n, mode and counting; mode is nil when
-- the entry is not a valid one (the caller's to reject).
local function hit_args(i)
  local b = 1 + (i - 1) * ARGS_PER_HIT
  local unit = tonumber(ARGV[b + 3])
  if not unit or unit <= 0 then
    -- As quota.Evaluate: a unit that is not positive means one second.
    unit = 1000000
  end
  local alg, burst, n, mode = ARGV[b + 1], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6]
  if alg == '0' then
    alg = 0
  elseif alg == '1' then
    alg = 1
  elseif alg == '2' then
    alg = 2
  else
    alg = tonumber(alg)
  end
  if burst == '0' then
    burst = 0
  else
    burst = tonumber(burst)
  end
  if n == '1' then
    n = 1
  else
    n = tonumber(n)
  end
  local counting = ALL_OR_NOTHING
  if mode == '0' then
    mode = NORMAL
  elseif mode == '1' then
    mode = SHADOW
  elseif mode == '2' then
    mode = QUOTA
  else
    local m = tonumber(mode)
    if m and m >= 0 and m < 9 and m % 1 == 0 then
      mode = m % 3
      counting = (m - mode) / 3
    else
      mode = nil
    end
  end
  return alg, tonumber(ARGV[b + 2]), unit, burst, n, mode, counting
end
