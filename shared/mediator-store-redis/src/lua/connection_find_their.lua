-- Lookup through the shared their_keys index. KEYS[1] records, KEYS[2] by-their-verkey; ARGV[1]
-- the key (base58). Returns the JSON of every record listing the key (unordered). Base58 has no
-- space and no byte 255 appears in UTF-8, so the range holds exactly this key's members.
local prefix = ARGV[1] .. ' '
local members = redis.call('ZRANGEBYLEX', KEYS[2], '[' .. prefix, '[' .. prefix .. '\255')
local found = {}
for _, member in ipairs(members) do
  local rec = redis.call('HGET', KEYS[1], string.sub(member, #prefix + 1))
  if rec then found[#found + 1] = rec end
end
return found
