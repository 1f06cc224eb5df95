-- Hot path: one call removes what every `messages-received` an instance has waiting acknowledged
-- (group commit, see `RemoveBatcher` in queue_remove.rs); one acknowledgement is a group of one.
-- Standalone (see queue_add.lua), each step one call for a queue's whole list.
-- KEYS: six per queue, as in queue_common.lua (the same queue may come several times).
-- ARGV: 1 ttl (unused), 2 how many queues, then per queue: how many ids, then the ids.
-- Removes those in the queue; returns how many per queue.
local n = tonumber(ARGV[2])
local out = {}
local a = 3

local function remove(k, first_arg, count)
  local K_ORDER, K_MSG, K_META, K_LEASE = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local ids, seen = {}, {}
  for i = first_arg, first_arg + count - 1 do
    local id = ARGV[i]
    if not seen[id] and redis.call('ZSCORE', K_ORDER, id) then
      seen[id] = true
      ids[#ids + 1] = id
    end
  end
  if #ids == 0 then return 0 end
  if redis.call('ZCARD', K_ORDER) == #ids then
    -- The whole queue goes: an empty queue leaves no key.
    redis.call('DEL', K_ORDER, K_MSG, K_META, K_LEASE, KEYS[k + 5], KEYS[k + 6])
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
  redis.call('DECRBY', KEYS[k + 5], freed)
  return #ids
end

for q = 0, n - 1 do
  local count = tonumber(ARGV[a])
  out[q + 1] = remove(6 * q, a + 1, count)
  a = a + 1 + count
end
return out
