-- Lookup through the shared their_keys index. KEYS[1] records, KEYS[2] by-their-verkey, KEYS[3]
-- expiring; ARGV[1] the key (base58). Returns the JSON of every record listing the key that has
-- not expired (unordered). Base58 has no space and no byte 255 appears in UTF-8, so the range
-- holds exactly this key's members.
local now = now_ms()
local prefix = ARGV[1] .. ' '
local members = redis.call('ZRANGEBYLEX', KEYS[2], '[' .. prefix, '[' .. prefix .. '\255')
local found = {}
for _, member in ipairs(members) do
  local id = string.sub(member, #prefix + 1)
  if not expired_in(KEYS[3], id, now) then
    local rec = redis.call('HGET', KEYS[1], id)
    if rec then found[#found + 1] = rec end
  end
end
return found
