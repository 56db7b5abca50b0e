-- index.lua: the index of every entry, in the index slot ({c}).
--
-- KEYS[1]  paths: ZSET, score 0, of path groups "PATH\0HOST\0HP", for
--          lexicographic range queries (exact path on every host, prefix)
-- KEYS[2]  gexp:  ZSET of the same members, score = the group's latest
--          Expires (ms), to prune groups that have expired
-- KEYS[3]  ents:  ZSET of entry ids (HP, primary, variant), score = Expires
-- KEYS[4]  sizes: HASH entry id -> its Size
-- KEYS[5]  bytes: the sum of sizes (a string counter)
-- KEYS[6..] tag sets ({c}tag:TAG) of "STAMP ID" members
--
-- ARGV[1]  "put", "drop" or "stats"
-- put:   ARGV[2] group member, ARGV[3] entry id, ARGV[4] Expires (ms),
--        ARGV[5] Size, ARGV[6] the tag member (for every tag set), then
--        ARGV[7..] entry ids to remove (variants put.lua dropped)
-- drop:  ARGV[2..] entry ids to remove; the tag sets are deleted
-- stats: nothing more
--
-- Every call first prunes what has expired (on Redis's clock, the one the
-- entries' TTLs run on), at most 1000 members of each ZSET.
-- Reply: {entries, bytes}: ZCARD ents and the byte counter.
--
-- Invariant: bytes is the sum of sizes over ents; every index key lives
-- until the latest score it holds, and tag sets until their latest entry.
local now = now_ms()
local paths, gexp, ents, sizes, bytes = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

local function remove(id)
  local s = redis.call('HGET', sizes, id)
  if s then
    redis.call('DECRBY', bytes, s)
    redis.call('HDEL', sizes, id)
  end
  redis.call('ZREM', ents, id)
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', ents, '-inf', now, 'LIMIT', 0, 1000)) do
  remove(id)
end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', gexp, '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', paths, m)
  redis.call('ZREM', gexp, m)
end

local mode = ARGV[1]
if mode == 'put' then
  local id, expires, size = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
  for i = 7, #ARGV do
    remove(ARGV[i])
  end
  redis.call('ZADD', paths, 0, ARGV[2])
  redis.call('ZADD', gexp, 'GT', expires, ARGV[2])
  local old = tonumber(redis.call('HGET', sizes, id) or '0')
  redis.call('HSET', sizes, id, size)
  redis.call('INCRBY', bytes, size - old)
  redis.call('ZADD', ents, expires, id)
  for i = 6, #KEYS do
    redis.call('SADD', KEYS[i], ARGV[6])
    extend(KEYS[i], expires, now)
  end
elseif mode == 'drop' then
  for i = 2, #ARGV do
    remove(ARGV[i])
  end
  for i = 6, #KEYS do
    redis.call('DEL', KEYS[i])
  end
end

local last = 0
for _, z in ipairs({ents, gexp}) do
  local top = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')
  if top[2] and tonumber(top[2]) > last then last = tonumber(top[2]) end
end
if last <= now then
  redis.call('DEL', paths, gexp, ents, sizes, bytes)
  return {0, 0}
end
for i = 1, 5 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('PEXPIREAT', KEYS[i], last)
  end
end
return {redis.call('ZCARD', ents), tonumber(redis.call('GET', bytes) or '0')}
