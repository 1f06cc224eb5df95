-- ARGV: 1 ttl, 2 id, 3 payload, 4 keys, 5 lease ms (0: not in flight), 6 max messages (-1: none),
-- 7 max bytes (-1: none). Returns {code, value, expired}: code 0 = added (value 1 if the queue was
-- empty before), 1 = over the message cap (value = cap), 2 = over the byte cap (value = cap).
local now = now_ms()
local expired = expire(now)
local count = redis.call('ZCARD', K_ORDER)
local bytes = tonumber(redis.call('GET', K_BYTES) or '0')
local max_messages, max_bytes = tonumber(ARGV[6]), tonumber(ARGV[7])
if max_messages >= 0 and count >= max_messages then return {1, max_messages, expired} end
if max_bytes >= 0 and bytes + string.len(ARGV[3]) > max_bytes then return {2, max_bytes, expired} end
-- A clock that steps back must not make a later message look older than an earlier one.
local received = now
local tail = redis.call('ZRANGE', K_ORDER, -1, -1)
if #tail > 0 then
  local m = redis.call('HGET', K_META, tail[1])
  if m then
    local r = parse_meta(m)
    if r > received then received = r end
  end
end
local lease = tonumber(ARGV[5])
local deliveries = 0
if lease > 0 then
  deliveries = 1
  redis.call('ZADD', K_LEASE, now + lease, ARGV[2])
end
redis.call('ZADD', K_ORDER, redis.call('INCR', K_SEQ), ARGV[2])
redis.call('HSET', K_MSG, ARGV[2], ARGV[3])
redis.call('HSET', K_META, ARGV[2], meta(received, deliveries, ARGV[4]))
redis.call('INCRBY', K_BYTES, string.len(ARGV[3]))
if TTL > 0 then
  -- Safety net: a queue nobody touches for a TTL (and a day) is all expired; the sweep counts
  -- such messages first, this only guarantees the keys do not stay forever. The keys' expiry is
  -- pushed out only when less than TTL + 12 h is left (two PTTLs per add, six PEXPIREs twice a
  -- day), so no message's keys go before it is TTL + 12 h old. The lease set is checked too: the
  -- leasing scripts create it without an expiry (-1).
  if redis.call('PTTL', K_ORDER) < TTL + 43200000 or redis.call('PTTL', K_LEASE) == -1 then
    for i = 1, 6 do redis.call('PEXPIRE', KEYS[i], TTL + 86400000) end
  end
end
local was_empty = 0
if count == 0 then was_empty = 1 end
return {0, was_empty, expired}
