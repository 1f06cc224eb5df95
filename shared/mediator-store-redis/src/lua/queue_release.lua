-- ARGV: 1 ttl, 2.. ids. Ends their leases; returns how many were in flight.
local now = now_ms()
local n = 0
for i = 2, #ARGV do
  local until_ms = redis.call('ZSCORE', K_LEASE, ARGV[i])
  if until_ms then
    if tonumber(until_ms) > now then n = n + 1 end
    redis.call('ZREM', K_LEASE, ARGV[i])
  end
end
return n
