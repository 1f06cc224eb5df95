-- KEYS: sessions, the instance's set. ARGV: instance, lease ms. Extends the leases that still run
-- of the sessions the instance holds; forgets the ones it lost. Returns how many it extended.
local now = now_ms()
local lease = tonumber(ARGV[2])
local n = 0
for _, connection in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local v = redis.call('HGET', KEYS[1], connection)
  local instance, session, until_ms
  if v then instance, session, until_ms = parse(v) end
  if instance == ARGV[1] and until_ms and until_ms > now then
    redis.call('HSET', KEYS[1], connection, string.format('%s %s %d', instance, session, now + lease))
    n = n + 1
  else
    redis.call('SREM', KEYS[2], connection)
    if instance == ARGV[1] then redis.call('HDEL', KEYS[1], connection) end
  end
end
if n > 0 then redis.call('PEXPIRE', KEYS[2], lease * 2) end
return n
