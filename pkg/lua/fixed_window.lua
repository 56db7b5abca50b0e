-- fixed_window.lua: quota.Evaluate's fixed window, line for line.
--
-- Counts hits per window of `unit` µs aligned to the Unix epoch. A hit of n
-- fits while count + n <= requests. The counter's TTL is the rest of its
-- window, so it is set once, when a window's first hit writes the counter.
--
-- Takes the counter as load returns it; returns fits (0/1), remaining,
-- reset-after (µs), the next state (w, c, p; p is unused) and its TTL (µs).
local function fixed_window(set, w, c, now, unit, requests, n)
  -- fmod is exact on doubles, and equals Go's % for non-negative times.
  local start = now - math.fmod(now, unit)
  local count = 0
  if set and w == start then
    count = c
  end
  local finish = start + unit
  -- As quota: n <= requests first, so the test means count + n <= requests.
  if n <= requests and count <= requests - n then
    return 1, requests - count - n, finish - now, start, count + n, 0, finish - now
  end
  return 0, 0, finish - now, start, count + n, 0, finish - now
end
