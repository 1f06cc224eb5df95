-- ARGV: 1 ttl, 2 limit, 3 recipient key ('' = any). Returns {expired, id, payload, meta, ...}:
-- up to `limit` messages, oldest first, in flight or not, unchanged.
local now = now_ms()
local expired = expire(now)
local limit, key = tonumber(ARGV[2]), ARGV[3]
local out = {expired}
local taken, start, batch = 0, 0, 256
while taken < limit do
  local ids = redis.call('ZRANGE', K_ORDER, start, start + batch - 1)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    if taken >= limit then break end
    local m = redis.call('HGET', K_META, id)
    local _, _, keys = parse_meta(m)
    if carries(keys, key) then
      out[#out + 1] = id
      out[#out + 1] = redis.call('HGET', K_MSG, id)
      out[#out + 1] = m
      taken = taken + 1
    end
  end
  start = start + batch
end
return out
