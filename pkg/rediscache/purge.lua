-- purge.lua: removes entries of one path group, in its slot.
--
-- KEYS[1]  the path group's set of primaries ({c:HP}p)
-- ARGV[1]  the prefix of the group's hash keys ({c:HP}k:), to which each
--          primary is appended: the hashes share KEYS[1]'s hash tag, so
--          they are on this node although not declared in KEYS
-- ARGV[2]  "*" to remove the whole group; else "" and then triples
--          ARGV[3..]: primary, variant id, stamp: remove that variant if
--          it is still the one stored with that stamp (a tag names the
--          entry it was stored with, not a later one under the same key)
--
-- Reply: primary, variant id pairs of the entries removed, flat.
local out = {}
local function drop_key(primary)
  local key = ARGV[1] .. primary
  for id in pairs(metas(key)) do
    out[#out + 1] = primary
    out[#out + 1] = id
  end
  redis.call('DEL', key)
end
if ARGV[2] == '*' then
  for _, primary in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    drop_key(primary)
  end
  redis.call('DEL', KEYS[1])
  return out
end
for i = 3, #ARGV - 2, 3 do
  local primary, id, stamp = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = ARGV[1] .. primary
  local m = redis.call('HGET', key, 'm:' .. id)
  if m and string.match(m, '^%d+ %d+ (%S*)$') == stamp then
    redis.call('HDEL', key, 'e:' .. id, 'm:' .. id)
    out[#out + 1] = primary
    out[#out + 1] = id
    local left = redis.call('HLEN', key)
    for _, v in ipairs(redis.call('HMGET', key, 'x', 'n')) do
      if v then left = left - 1 end
    end
    if left <= 2 then
      -- Only g and v (and x, n) are left: the Key holds nothing.
      redis.call('DEL', key)
      redis.call('SREM', KEYS[1], primary)
    end
  end
end
return out
