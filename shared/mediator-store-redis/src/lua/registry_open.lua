-- KEYS: sessions, the new holder's instance set. ARGV: connection, instance, session, lease ms.
-- Returns {} or {instance, session} of the live holder it replaced.
local now = now_ms()
local lease = tonumber(ARGV[4])
local previous = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], string.format('%s %s %d', ARGV[2], ARGV[3], now + lease))
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], lease * 2)
if previous then
  local instance, session, until_ms = parse(previous)
  if until_ms and until_ms > now and (instance ~= ARGV[2] or session ~= ARGV[3]) then
    return {instance, session}
  end
end
return {}
