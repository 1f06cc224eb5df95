-- Hot path: one call adds every Forward an instance has waiting (group commit, see `AddBatcher` in
-- queue.rs); one message is a batch of one. Standalone, without queue_common.lua (whose helpers
-- would be built as closures on every call), and it makes as few calls as it can: an add to an
-- empty queue (a live client's, nearly always) is 7 calls and the keys' expiry.
-- KEYS: six per message, as in queue_common.lua (order, msg, meta, lease, bytes, seq of the
-- message's queue; the same queue may come several times), then the queue index when a message
-- asks to be listed. The order score is received_ms * 1000 + n.
-- ARGV: 1 ttl, 2 max messages (-1: none), 3 max bytes (-1: none), 4 how many messages, then eight
-- per message: id, payload, keys, lease ms (0: not in flight), 1 if the caller already expired
-- the queue's old messages, the connection id to list in the index ('': none), a pub/sub channel
-- and the notice to PUBLISH there once the message is added ('' and '': none).
-- Returns {code, value, heard} per message, flattened: code 0 = added (value 1 if the queue was
-- empty before), 1 = over the message cap (value = cap), 2 = over the byte cap (value = cap), 3 =
-- a cap is reached but the queue may hold expired messages: expire them (queue_expire.lua) and
-- add it again with ARGV "expired" = 1. Messages refused leave nothing behind; the others are
-- added. heard: how many subscribers the notice reached (-1: none was published).
local TTL, max_messages, max_bytes = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local life = TTL + 86400000
local K_INDEX = KEYS[6 * n + 1]

local function add(k, a)
  local K_ORDER, K_MSG, K_META, K_LEASE, K_BYTES = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
  local id, payload, lease = ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 4])
  local size = string.len(payload)
  local count = redis.call('ZCARD', K_ORDER)
  local bytes = 0
  if count > 0 and max_bytes >= 0 then bytes = tonumber(redis.call('GET', K_BYTES) or '0') end
  local code, cap = 0, 0
  if max_messages >= 0 and count >= max_messages then
    code, cap = 1, max_messages
  elseif max_bytes >= 0 and bytes + size > max_bytes then
    code, cap = 2, max_bytes
  end
  if code ~= 0 then
    -- Expired messages must not hold a place: the caller expires them, then asks again.
    if count > 0 and TTL > 0 and ARGV[a + 5] ~= '1' then return 3, 0 end
    return code, cap
  end
  if ARGV[a + 6] ~= '' then redis.call('SADD', K_INDEX, ARGV[a + 6]) end
  local seq = now * 1000
  if count > 0 then
    -- A clock that steps back must not put a later message before an earlier one.
    local tail = redis.call('ZRANGE', K_ORDER, -1, -1, 'WITHSCORES')
    if #tail > 0 and tonumber(tail[2]) >= seq then seq = tonumber(tail[2]) + 1 end
  end
  local deliveries = 0
  if lease > 0 then
    deliveries = 1
    redis.call('ZADD', K_LEASE, now + lease, id)
  end
  -- '%d': Lua would write a number this big with 14 digits only.
  redis.call('ZADD', K_ORDER, string.format('%d', seq), id)
  redis.call('HSET', K_MSG, id, payload)
  redis.call('HSET', K_META, id, string.format('%d|%d|%s', math.floor(seq / 1000), deliveries, ARGV[a + 3]))
  if count == 0 then
    -- A new queue (an empty one leaves no key): every key is created here, without an expiry.
    if TTL > 0 then
      redis.call('SET', K_BYTES, size, 'PX', life)
      for _, key in ipairs({K_ORDER, K_MSG, K_META}) do redis.call('PEXPIRE', key, life) end
      if lease > 0 then redis.call('PEXPIRE', K_LEASE, life) end
    else
      redis.call('SET', K_BYTES, size)
    end
    return 0, 1
  end
  redis.call('INCRBY', K_BYTES, size)
  if TTL > 0 then
    -- Safety net: a queue nobody touches for a TTL (and a day) is all expired; the sweep counts
    -- such messages first, this only guarantees the keys do not stay forever. The keys' expiry is
    -- pushed out only when less than TTL + 12 h is left (twice a day), so no message's keys go
    -- before it is TTL + 12 h old. The lease set is checked too: the leasing scripts create it
    -- without an expiry (-1).
    if redis.call('PTTL', K_ORDER) < TTL + 43200000 or redis.call('PTTL', K_LEASE) == -1 then
      for i = 1, 5 do redis.call('PEXPIRE', KEYS[k + i], life) end
    end
  end
  return 0, 0
end

local out = {}
for i = 0, n - 1 do
  local a = 4 + 8 * i
  local code, value = add(6 * i, a)
  local heard = -1
  if code == 0 and ARGV[a + 7] ~= '' then heard = redis.call('PUBLISH', ARGV[a + 7], ARGV[a + 8]) end
  out[3 * i + 1] = code
  out[3 * i + 2] = value
  out[3 * i + 3] = heard
end
return out
