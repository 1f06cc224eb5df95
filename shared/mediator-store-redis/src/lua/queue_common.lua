-- Shared by every queue script. KEYS, all under the connection's one hash tag:
--   1 order  ZSET  id -> arrival sequence (FIFO): received_ms * 1000 + n, n counting the arrivals
--                     within that ms; queues written before this scheme have small counters (1, 2,
--                     ...) instead, which sort first and whose received time is in meta

--   2 msg    HASH  id -> payload (bytes, exactly as queued)
--   3 meta   HASH  id -> "<received_ms>|<deliveries>|<key>,<key>..." (keys in base58)
--   4 lease  ZSET  id -> in flight until (unix ms)
--   5 bytes  STRING total payload bytes
--   6 seq    STRING last arrival counter (queues written before the received_ms scheme only)
-- ARGV[1] is always the message TTL in ms (0: none). Times are the Redis server's (TIME), so
-- every instance sees the same clock for leases and expiry.
local K_ORDER, K_MSG, K_META, K_LEASE, K_BYTES, K_SEQ = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local TTL = tonumber(ARGV[1])

-- Order scores at least this big are received_ms * 1000 + n (any Redis clock after 2001).
local SEQ_TIMED = 1e15

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function parse_meta(m)
  local r, d, k = string.match(m, '^(%d+)|(%d+)|(.*)$')
  return tonumber(r), tonumber(d), k
end

local function meta(received, deliveries, keys)
  return string.format('%d|%d|%s', received, deliveries, keys)
end

local function carries(keys, key)
  if key == '' then return true end
  for k in string.gmatch(keys, '[^,]+') do
    if k == key then return true end
  end
  return false
end

local function in_flight(id, now)
  local until_ms = redis.call('ZSCORE', K_LEASE, id)
  return until_ms and tonumber(until_ms) > now
end

local function drop(id)
  local len = redis.call('HSTRLEN', K_MSG, id)
  redis.call('HDEL', K_MSG, id)
  redis.call('HDEL', K_META, id)
  redis.call('ZREM', K_ORDER, id)
  redis.call('ZREM', K_LEASE, id)
  redis.call('DECRBY', K_BYTES, len)
end

-- An empty queue leaves no key behind.
local function cleanup_if_empty()
  if redis.call('ZCARD', K_ORDER) == 0 then
    redis.call('DEL', K_ORDER, K_MSG, K_META, K_LEASE, K_BYTES, K_SEQ)
    return true
  end
  return false
end

-- Drops messages past their age from the head (the oldest come first); returns how many. A head
-- in the received_ms scheme is judged by its score alone (one call); an older one by its meta.
local function expire(now)
  if TTL <= 0 then return 0 end
  local cutoff = now - TTL
  local n = 0
  while n < 10000 do
    local head = redis.call('ZRANGE', K_ORDER, 0, 0, 'WITHSCORES')
    if #head == 0 then break end
    local score = tonumber(head[2])
    local received
    if score >= SEQ_TIMED then
      received = math.floor(score / 1000)
    else
      local m = redis.call('HGET', K_META, head[1])
      received = 0
      if m then received = parse_meta(m) end
    end
    if received >= cutoff then break end
    drop(head[1])
    n = n + 1
  end
  if n > 0 then cleanup_if_empty() end
  return n
end
