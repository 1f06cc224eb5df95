-- ARGV: 1 ttl, 2 lease ms, 3.. ids. Returns {expired, id, payload, meta, ...}: those of the ids that
-- are queued and wait, in queue order, now in flight.
local now = now_ms()
local expired = expire(now)
local lease = tonumber(ARGV[2])
local found = {}
local seen = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  if not seen[id] then
    seen[id] = true
    local seq = redis.call('ZSCORE', K_ORDER, id)
    if seq and not in_flight(id, now) then
      found[#found + 1] = {tonumber(seq), id}
    end
  end
end
table.sort(found, function(a, b) return a[1] < b[1] end)
local out = {expired}
for _, item in ipairs(found) do
  local id = item[2]
  local r, d, keys = parse_meta(redis.call('HGET', K_META, id))
  local m = meta(r, d + 1, keys)
  redis.call('HSET', K_META, id, m)
  redis.call('ZADD', K_LEASE, now + lease, id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', K_MSG, id)
  out[#out + 1] = m
end
return out
