-- Restore (`mediator copy`, offline): appends copies of another store's messages to one queue,
-- keeping their ids, keys, received times and deliveries, none in flight, no cap applied.
-- KEYS: the six of queue_common.lua (the caller lists the queue in the index first: the index
-- may be in another cluster slot). ARGV: 1 ttl, 2 unused, 3 how many messages, then five per
-- message: id, payload, keys (base58, comma-separated), received ms, deliveries.
-- Returns {0, expired}, or {1, id} when an id is already queued here or given twice (then
-- nothing is written).
local n = tonumber(ARGV[3])
local now = now_ms()
local expired = expire(now)
local given = {}
for i = 0, n - 1 do
  local id = ARGV[4 + 5 * i]
  if given[id] or redis.call('HEXISTS', K_META, id) == 1 then return {1, id} end
  given[id] = true
end
if n == 0 then return {0, expired} end
local tail = redis.call('ZRANGE', K_ORDER, -1, -1, 'WITHSCORES')
local last = -1
if #tail > 0 then last = tonumber(tail[2]) end
local size = 0
for i = 0, n - 1 do
  local a = 3 + 5 * i
  local id, payload, keys = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local received, deliveries = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  -- Order: received_ms * 1000 + n, after the queue's tail whatever the received time.
  local seq = received * 1000
  if seq <= last then seq = last + 1 end
  last = seq
  -- '%d': Lua would write a number this big with 14 digits only.
  redis.call('ZADD', K_ORDER, string.format('%d', seq), id)
  redis.call('HSET', K_MSG, id, payload)
  redis.call('HSET', K_META, id, meta(received, deliveries, keys))
  redis.call('ZREM', K_LEASE, id)
  size = size + string.len(payload)
end
redis.call('INCRBY', K_BYTES, size)
if TTL > 0 then
  -- The safety net of queue_add.lua: the keys go a day after the TTL if nobody touches them.
  local life = TTL + 86400000
  for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], life) end
end
-- Messages already past their age go now, as any expired message.
return {0, expired + expire(now)}
