-- Hot path: one call per `messages-received` (a live client's acknowledgement). Standalone
-- (see queue_add.lua), each step one call for the whole batch.
-- ARGV: 1 ttl, 2.. ids. Removes those in the queue; returns how many.
local K_ORDER, K_MSG, K_META, K_LEASE = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ids, seen = {}, {}
for i = 2, #ARGV do
  local id = ARGV[i]
  if not seen[id] and redis.call('ZSCORE', K_ORDER, id) then
    seen[id] = true
    ids[#ids + 1] = id
  end
end
if #ids == 0 then return 0 end
if redis.call('ZCARD', K_ORDER) == #ids then
  -- The whole queue goes: an empty queue leaves no key.
  redis.call('DEL', K_ORDER, K_MSG, K_META, K_LEASE, KEYS[5], KEYS[6])
  return #ids
end
local freed = 0
-- In slices: unpack puts every argument on Lua's stack, which is bounded.
for first = 1, #ids, 1000 do
  local last = math.min(first + 999, #ids)
  for i = first, last do freed = freed + redis.call('HSTRLEN', K_MSG, ids[i]) end
  redis.call('ZREM', K_ORDER, unpack(ids, first, last))
  redis.call('HDEL', K_MSG, unpack(ids, first, last))
  redis.call('HDEL', K_META, unpack(ids, first, last))
  redis.call('ZREM', K_LEASE, unpack(ids, first, last))
end
redis.call('DECRBY', KEYS[5], freed)
return #ids
