-- get.lua: a cache lookup, the whole of a Get in one call.
--
-- KEYS[1]  the Key's hash ({c:HP}k:PRIMARY)
-- ARGV[1]  the path group, as the hash's field g holds it
-- ARGV[2]  the request's headers, packed (see variant.lua)
--
-- Reply: the encoded entry of the request's variant, or false when the Key
-- has none, belongs to another path group (a digest collision) or its Vary
-- field is corrupt. Read only; whether the entry is fresh is the caller's
-- to judge (it holds Expires). A Key without Vary names has one variant,
-- e: (the empty id), read with g and v: one HMGET.
local f = redis.call('HMGET', KEYS[1], 'g', 'v', 'e:')
if f[1] ~= ARGV[1] or not f[2] then
  return false
end
if f[2] == '' then
  return f[3]
end
local names = parse_vary(f[2])
if not names then
  return false
end
return redis.call('HGET', KEYS[1], 'e:' .. variant_id(names, ARGV[2]))
