-- ARGV: 1 ttl, 2 limit, 3 recipient key ('' = any), 4 lease ms, 5 byte budget (-1 = none).
-- Returns {expired, id, payload, meta, id, payload, meta, ...}: up to `limit` waiting messages,
-- oldest first, now in flight, whose payloads sum to at most the budget; the first one is handed
-- out whatever its size. The batch ends at the first message that would pass the budget (FIFO:
-- no later, smaller one is taken instead). Its length is read with HSTRLEN before its payload,
-- so a message that does not fit is never read.
local now = now_ms()
local expired = expire(now)
local limit, key, lease = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local budget = tonumber(ARGV[5])
local out = {expired}
local taken, bytes, start, batch = 0, 0, 0, 256
local full = false
while taken < limit and not full do
  local ids = redis.call('ZRANGE', K_ORDER, start, start + batch - 1)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    if taken >= limit then break end
    if not in_flight(id, now) then
      local r, d, keys = parse_meta(redis.call('HGET', K_META, id))
      if carries(keys, key) then
        local len = redis.call('HSTRLEN', K_MSG, id)
        if taken > 0 and budget >= 0 and bytes + len > budget then
          full = true
          break
        end
        bytes = bytes + len
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
