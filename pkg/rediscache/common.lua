-- common.lua: helpers for the writing scripts, never run alone.

-- now_ms is Redis's clock, the one TTLs run on.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- extend makes key live at least until at (ms since the epoch): every key
-- the cache creates gets a TTL, the latest of what it holds. For keys
-- that cannot hold their latest expiry themselves (sets); hashes keep it
-- in a field and skip the PTTL.
local function extend(key, at, now)
  local ttl = redis.call('PTTL', key)
  if ttl == -1 or (ttl >= 0 and now + ttl < at) then
    redis.call('PEXPIREAT', key, at)
  end
end

-- metas reads the m: fields of a Key's hash: variant id -> {expires, size,
-- stamp}, from the "EXPIRES SIZE STAMP" each holds.
local function metas(key)
  local out = {}
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if string.sub(f, 1, 2) == 'm:' then
      local v = redis.call('HGET', key, f)
      local e, s, st = string.match(v, '^(%d+) (%d+) (%S*)$')
      out[string.sub(f, 3)] = {tonumber(e) or 0, tonumber(s) or 0, st or ''}
    end
  end
  return out
end
