-- KEYS: sessions, the holder's instance set. ARGV: connection, instance, session.
-- Compare-and-delete: 1 if that exact holder held it and it is gone, else 0.
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local instance, session = parse(v)
if instance == ARGV[2] and session == ARGV[3] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[1])
  return 1
end
return 0
