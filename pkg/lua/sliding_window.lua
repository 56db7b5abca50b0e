-- sliding_window.lua: quota.Evaluate's sliding-window counter, line for line.
--
-- The estimate is prev * (share of the previous window still inside the
-- sliding window) + cur; a hit of n fits while estimate + n <= requests
-- (+ EPSILON). The counter holds cur through the next window, where it is
-- prev, so its TTL reaches the end of the next window: set once per window,
-- when the window's first hit writes it.
--
-- Takes the counter as load returns it; returns fits (0/1), remaining,
-- reset-after (µs), the next state (w, c, p) and its TTL (µs).

-- sliding_wait is quota's slidingWait: the time from now until a hit of n
-- would fit.
local function sliding_wait(limit, cur, prev, n, now, start, unit)
  local finish = start + unit
  if n > limit then
    -- Never fits: the time until both windows have passed.
    return finish + unit - now
  end
  local room = limit - n
  if cur <= limit - n and prev > 0 then
    local e = unit - (room - cur) * unit / prev
    local at = start + math.ceil(e)
    if at > now and at <= finish then
      return at - now
    end
  end
  if cur == 0 or cur <= room then
    return finish - now
  end
  local e = unit - room * unit / cur
  return finish + math.ceil(e) - now
end

local function sliding_window(set, w, c, p, now, unit, requests, n)
  local start = now - math.fmod(now, unit)
  local cur, prev = 0, 0
  if set then
    if w == start then
      cur, prev = c, p
    elseif w == start - unit then
      prev = c
    end
  end
  local elapsed = now - start
  local finish = start + unit
  local weight = (unit - elapsed) / unit
  local estimate = prev * weight + cur
  local ttl = finish + unit - now
  local after = estimate + n
  if after <= requests + EPSILON then
    local left = math.floor(requests - after + EPSILON)
    if left < 0 then
      left = 0
    end
    return 1, left, finish - now, start, cur + n, prev, ttl
  end
  return 0, 0, sliding_wait(requests, cur, prev, n, now, start, unit), start, cur + n, prev, ttl
end
