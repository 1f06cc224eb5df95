-- KEYS: sessions. Returns {connection, instance, session, ...} of the leases that run; drops the
-- records of leases that ran out (instances that died).
local now = now_ms()
local out = {}
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  local instance, session, until_ms = parse(flat[i + 1])
  if until_ms and until_ms > now then
    out[#out + 1] = flat[i]
    out[#out + 1] = instance
    out[#out + 1] = session
  else
    redis.call('HDEL', KEYS[1], flat[i])
  end
end
return out
