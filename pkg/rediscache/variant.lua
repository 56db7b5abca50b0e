-- variant.lua: shared by get.lua (and the tests), never run alone.
--
-- parse_vary reads a Key's Vary names as the store writes them, each name
-- (lower case) as LEN:NAME; nil when the field is corrupt.
-- variant_id is cachestore.VariantID over those names and the request's
-- headers, packed in one string as packHeaders writes them: per header
-- LEN:NAME (the name in lower case, ASCII only, like the Go side) then
-- LEN:VALUE. For each name: LEN:NAME, then "!" when no field has that
-- name, else "=" and the values of its fields, joined with ", ", as
-- LEN:VALUE.
local function parse_vary(enc)
  local names, pos = {}, 1
  while pos <= #enc do
    local colon = string.find(enc, ':', pos, true)
    if not colon then return nil end
    local n = tonumber(string.sub(enc, pos, colon - 1))
    if not n or colon + n > #enc then return nil end
    names[#names + 1] = string.sub(enc, colon + 1, colon + n)
    pos = colon + n + 1
  end
  return names
end

local function variant_id(names, packed)
  if #names == 0 then return '' end
  local fields, pos = {}, 1
  while pos <= #packed do
    local colon = string.find(packed, ':', pos, true)
    if not colon then break end
    local n = tonumber(string.sub(packed, pos, colon - 1))
    if not n then break end
    fields[#fields + 1] = string.sub(packed, colon + 1, colon + n)
    pos = colon + n + 1
  end
  local out = {}
  for _, name in ipairs(names) do
    local vals = {}
    for i = 1, #fields - 1, 2 do
      if fields[i] == name then
        vals[#vals + 1] = fields[i + 1]
      end
    end
    out[#out + 1] = #name .. ':' .. name
    if #vals == 0 then
      out[#out + 1] = '!'
    else
      local v = table.concat(vals, ', ')
      out[#out + 1] = '=' .. #v .. ':' .. v
    end
  end
  return table.concat(out)
end
