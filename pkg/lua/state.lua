-- state.lua: shared by take.lua and refund.lua (prepended to both).
--
-- A counter is one Redis string; the algorithm (which is part of the key)
-- decides its layout. Numbers are written with %.17g, which reads back into
-- the very same double, so a fractional token count survives a round trip
-- through Redis bit for bit, as it would in the in-memory backend.
--
--   fixed_window:   "<window start µs>:<hits in window>"
--   sliding_window: "<window start µs>:<hits in window>:<hits in previous window>"
--   token_bucket:   "<last update µs>:<tokens then>"
--
-- Algorithm codes are quota.Algorithm's values.
local SLIDING_WINDOW, FIXED_WINDOW, TOKEN_BUCKET = 0, 1, 2

-- EPSILON is quota's epsilon: it absorbs float rounding so that exact
-- arithmetic on paper never rejects a hit.
local EPSILON = 1e-9

-- ARGS_PER_HIT is the number of ARGV entries per key after ARGV[1].
local ARGS_PER_HIT = 6

local function num(x)
  return string.format('%.17g', x)
end

-- load reads a counter; st.set is false when it is missing or unreadable
-- (an unreadable value is treated as a fresh counter and overwritten).
local function load(key, alg)
  local v = redis.call('GET', key)
  if not v then
    return { set = false }
  end
  if alg == TOKEN_BUCKET then
    local w, t = string.match(v, '^([^:]+):([^:]+)$')
    w, t = tonumber(w), tonumber(t)
    if w and t then
      return { set = true, w = w, t = t }
    end
  elseif alg == SLIDING_WINDOW then
    local w, c, p = string.match(v, '^([^:]+):([^:]+):([^:]+)$')
    w, c, p = tonumber(w), tonumber(c), tonumber(p)
    if w and c and p then
      return { set = true, w = w, c = c, p = p }
    end
  else
    local w, c = string.match(v, '^([^:]+):([^:]+)$')
    w, c = tonumber(w), tonumber(c)
    if w and c then
      return { set = true, w = w, c = c }
    end
  end
  return { set = false }
end

local function encode(st, alg)
  if alg == TOKEN_BUCKET then
    return num(st.w) .. ':' .. num(st.t)
  elseif alg == SLIDING_WINDOW then
    return num(st.w) .. ':' .. num(st.c) .. ':' .. num(st.p)
  end
  return num(st.w) .. ':' .. num(st.c)
end

-- hit_args reads the i-th hit's ARGV entries.
local function hit_args(i)
  local b = 1 + (i - 1) * ARGS_PER_HIT
  local unit = tonumber(ARGV[b + 3])
  if not unit or unit <= 0 then
    -- As quota.Evaluate: a unit that is not positive means one second.
    unit = 1000000
  end
  return tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), unit,
    tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5]), ARGV[b + 6] == '1'
end
