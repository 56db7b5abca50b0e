-- index.lua: the index of every entry, in the index slot ({c}).
--
-- KEYS[1]  paths: ZSET, score 0, of path groups "PATH\0HOST\0HP", for
--          lexicographic range queries (exact path on every host, prefix)
-- KEYS[2]  gexp:  ZSET of the same members, score = the group's latest
--          Expires (ms), to prune groups that have expired
-- KEYS[3]  ents:  ZSET of entry ids (HP, primary, variant), score = Expires
-- KEYS[4]  sizes: HASH entry id -> its Size; and two fields no id can be
--          (ids start with 16 hex digits): "!hi", the time the index keys
--          were last given as their TTL, and "!p", when a put prunes next
-- KEYS[5]  bytes: the sum of sizes (a string counter)
-- KEYS[6..] tag sets ({c}tag:TAG) of "STAMP ID" members
--
-- ARGV[1]  "put", "drop" or "stats"
-- put:   ARGV[2] group member, ARGV[3] entry id, ARGV[4] Expires (ms),
--        ARGV[5] Size, ARGV[6] the tag member (for every tag set), then
--        ARGV[7..] entry ids to remove
-- drop:  ARGV[2..] entry ids to remove; the tag sets are deleted
-- stats: nothing more
--
-- drop and stats first prune what has expired (on Redis's clock, the one
-- the entries' TTLs run on), at most 1000 members of each ZSET; a put
-- does at most once a second (when "!p" is due).
-- Reply: for stats {entries, bytes}: ZCARD ents and the byte counter;
-- for put and drop 0.
--
-- Invariant: bytes is the sum of sizes over ents; every index key has a
-- TTL, also one that Redis evicted and this put recreated; it lives
-- until the latest score it holds (and at most a sixteenth of that
-- score's distance from the put, capped at one minute, beyond: the slack
-- that spares most puts the PEXPIREATs), and tag sets until their latest
-- entry.
local now = now_ms()
local paths, gexp, ents, sizes, bytes = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

-- remove takes entry ids out of ents, sizes and bytes, in batches.
local function remove(ids, from, to)
  local total = 0
  for i = from, to, 500 do
    local j = math.min(i + 499, to)
    local chunk = {}
    for k = i, j do chunk[#chunk + 1] = ids[k] end
    local s = redis.call('HMGET', sizes, unpack(chunk))
    for k = 1, #chunk do
      if s[k] then total = total + (tonumber(s[k]) or 0) end
    end
    redis.call('HDEL', sizes, unpack(chunk))
    redis.call('ZREM', ents, unpack(chunk))
  end
  if total ~= 0 then
    redis.call('DECRBY', bytes, total)
  end
end

local function prune()
  local ids = redis.call('ZRANGEBYSCORE', ents, '-inf', now, 'LIMIT', 0, 1000)
  if #ids > 0 then remove(ids, 1, #ids) end
  local ms = redis.call('ZRANGEBYSCORE', gexp, '-inf', now, 'LIMIT', 0, 1000)
  if #ms > 0 then
    redis.call('ZREM', paths, unpack(ms))
    redis.call('ZREM', gexp, unpack(ms))
  end
end

local mode = ARGV[1]
if mode == 'put' then
  local member, id, expires, size = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
  local f = redis.call('HMGET', sizes, id, '!hi', '!p')
  local hi, due = tonumber(f[2]), tonumber(f[3])
  local heal = false
  if not due or due <= now then
    prune()
    due = now + 1000
    heal = true
  end
  if #ARGV >= 7 then remove(ARGV, 7, #ARGV) end
  -- A ZSET that Redis evicted (maxmemory) comes back without a TTL, and
  -- only with a new member: the keys that gained one are checked below.
  local added = {}
  if redis.call('ZADD', paths, 0, member) == 1 then added[#added + 1] = paths end
  if redis.call('ZADD', gexp, 'GT', expires, member) == 1 then added[#added + 1] = gexp end
  -- A new member of ents has no size yet (sizes holds exactly ents' ids);
  -- an old one had f[1], unless the prune or ARGV[7..] just removed it.
  local old = 0
  if redis.call('ZADD', ents, expires, id) == 0 then
    old = tonumber(f[1] or '0') or 0
  else
    added[#added + 1] = ents
  end
  local total
  if size ~= old or not hi then
    total = redis.call('INCRBY', bytes, size - old)
  end
  -- A total of just this change means the counter was empty or gone (the
  -- index was empty, or bytes was evicted): its keys may be new ones,
  -- without a TTL.
  local fields = {'HSET', sizes, id, size}
  local at
  if heal or not hi or hi <= now or expires > hi or total == size - old then
    at = expires + math.min(60000, math.max(0, math.floor((expires - now) / 16)))
    if hi and hi > at then at = hi end
    -- An entry stored already expired keeps the index a second more (it
    -- is pruned then): a TTL in the past would delete every index key.
    if at <= now then at = now + 1000 end
    fields[#fields + 1] = '!hi'
    fields[#fields + 1] = at
  end
  if heal then
    fields[#fields + 1] = '!p'
    fields[#fields + 1] = due
  end
  redis.call(unpack(fields))
  if at then
    -- After the writes: each of the five keys exists now.
    for i = 1, 5 do
      redis.call('PEXPIREAT', KEYS[i], at)
    end
  else
    -- hi is the TTL the index keys were given and is still ahead; a key
    -- recreated since has none (sizes cannot be: it holds hi).
    for _, k in ipairs(added) do
      extend(k, hi, now)
    end
  end
  for i = 6, #KEYS do
    redis.call('SADD', KEYS[i], ARGV[6])
    extend(KEYS[i], expires, now)
  end
  return 0
end

prune()
if mode == 'drop' then
  if #ARGV >= 2 then remove(ARGV, 2, #ARGV) end
  for i = 6, #KEYS do
    redis.call('DEL', KEYS[i])
  end
  return 0
end
return {redis.call('ZCARD', ents), tonumber(redis.call('GET', bytes) or '0')}
