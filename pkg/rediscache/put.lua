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
-- Invariant: the hash holds g, v and, per variant, e:VID (the entry) and
-- m:VID ("EXPIRES SIZE STAMP"); it and the set live until the latest
-- Expires of what they hold.
local now = now_ms()
local vid = ARGV[3]
local expires = tonumber(ARGV[5])
local dropped = {}
local cur = redis.call('HMGET', KEYS[1], 'g', 'v')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then
  for id in pairs(metas(KEYS[1])) do
    if id ~= vid then dropped[#dropped + 1] = id end
  end
  redis.call('DEL', KEYS[1])
else
  for id, m in pairs(metas(KEYS[1])) do
    if id ~= vid and m[1] <= now then
      redis.call('HDEL', KEYS[1], 'e:' .. id, 'm:' .. id)
      dropped[#dropped + 1] = id
    end
  end
end
redis.call('HSET', KEYS[1], 'g', ARGV[1], 'v', ARGV[2], 'e:' .. vid, ARGV[4],
  'm:' .. vid, ARGV[5] .. ' ' .. ARGV[6] .. ' ' .. ARGV[7])
extend(KEYS[1], expires, now)
redis.call('SADD', KEYS[2], ARGV[8])
extend(KEYS[2], expires, now)
return dropped
