-- ARGV: 1 ttl, 2 uncount (1: the handout is not counted: deliveries - 1), 3.. ids. Ends their
-- leases; returns how many were in flight.
local now = now_ms()
local uncount = ARGV[2] == '1'
local n = 0
for i = 3, #ARGV do
  local until_ms = redis.call('ZSCORE', K_LEASE, ARGV[i])
  if until_ms then
    if tonumber(until_ms) > now then n = n + 1 end
    redis.call('ZREM', K_LEASE, ARGV[i])
    if uncount then
      local m = redis.call('HGET', K_META, ARGV[i])
      if m then
        local r, d, keys = parse_meta(m)
        if d > 0 then redis.call('HSET', K_META, ARGV[i], meta(r, d - 1, keys)) end
      end
    end
  end
end
return n
