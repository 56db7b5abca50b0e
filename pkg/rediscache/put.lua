-- put.lua: stores one variant of a Key, in the Key's path group slot.
--
-- KEYS[1]  the Key's hash ({c:HP}k:PRIMARY)
-- KEYS[2]  the path group's set of primaries ({c:HP}p)
-- ARGV[1]  the path group (field g)      ARGV[2] the Vary names (field v)
-- ARGV[3]  the variant id                ARGV[4] the encoded entry
-- ARGV[5]  Expires, ms since the epoch   ARGV[6] the entry's Size
-- ARGV[7]  a stamp naming this store     ARGV[8] the primary
--
-- Reply: the variant ids this call dropped besides the one it replaces:
-- all of them when the Vary names (or the path group) changed, else those
-- that had expired. The caller removes them from the index.
--
-- Invariant: the hash holds g, v, x (the latest Expires it was given the
-- TTL of), n (at most the earliest Expires of its variants) and, per
-- variant, e:VID (the entry) and m:VID ("EXPIRES SIZE STAMP"); it and the
-- set live until the latest Expires of what they hold. With x and n, a
-- store whose Expires is not later than x sets no TTL, and one before n
-- reads no variant: the common store runs HMGET, HSET, SADD and, for a
-- new Key, PEXPIREAT, and for a new primary in the set PTTL (PEXPIREAT).
local now
local vid = ARGV[3]
local expires = tonumber(ARGV[5])
local dropped = {}
local cur = redis.call('HMGET', KEYS[1], 'g', 'v', 'x', 'n')
local hi, lo = tonumber(cur[3]), tonumber(cur[4])
local exists = cur[1] or cur[2]
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then
  if exists then
    for id in pairs(metas(KEYS[1])) do
      if id ~= vid then dropped[#dropped + 1] = id end
    end
    redis.call('DEL', KEYS[1])
  end
  exists, hi, lo = false, nil, nil
else
  if not lo or not hi then
    now = now_ms()
  end
  if not lo or lo <= (now or now_ms()) then
    now = now or now_ms()
    lo = nil
    for id, m in pairs(metas(KEYS[1])) do
      if id ~= vid then
        if m[1] <= now then
          redis.call('HDEL', KEYS[1], 'e:' .. id, 'm:' .. id)
          dropped[#dropped + 1] = id
        elseif not lo or m[1] < lo then
          lo = m[1]
        end
      end
    end
  end
end
if not lo or expires < lo then lo = expires end
local top = hi
if exists and not hi then
  -- A hash without x (written before x was): its TTL is the one to keep.
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl >= 0 then top = now + ttl end
end
local newtop = (top and top > expires) and top or expires
redis.call('HSET', KEYS[1], 'g', ARGV[1], 'v', ARGV[2], 'e:' .. vid, ARGV[4],
  'm:' .. vid, ARGV[5] .. ' ' .. ARGV[6] .. ' ' .. ARGV[7], 'x', newtop, 'n', lo)
if not top or expires > top then
  redis.call('PEXPIREAT', KEYS[1], expires)
end
-- The set lives at least as long as every hash it names: when the primary
-- was in it already and its hash's TTL covered expires, so does the set's.
if redis.call('SADD', KEYS[2], ARGV[8]) == 1 or not hi or expires > hi then
  extend(KEYS[2], expires, now or now_ms())
end
return dropped
