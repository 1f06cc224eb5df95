-- ARGV: 1 ttl, 2 limit, 3 recipient key ('' = any), 4 lease ms.
-- Returns {expired, id, payload, meta, id, payload, meta, ...}: up to `limit` waiting messages,
-- oldest first, now in flight.
local now = now_ms()
local expired = expire(now)
local limit, key, lease = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local out = {expired}
local taken, start, batch = 0, 0, 256
while taken < limit do
  local ids = redis.call('ZRANGE', K_ORDER, start, start + batch - 1)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    if taken >= limit then break end
    if not in_flight(id, now) then
      local r, d, keys = parse_meta(redis.call('HGET', K_META, id))
      if carries(keys, key) then
        local m = meta(r, d + 1, keys)
        redis.call('HSET', K_META, id, m)
        redis.call('ZADD', K_LEASE, now + lease, id)
        out[#out + 1] = id
        out[#out + 1] = redis.call('HGET', K_MSG, id)
        out[#out + 1] = m
        taken = taken + 1
      end
    end
  end
  start = start + batch
end
return out
