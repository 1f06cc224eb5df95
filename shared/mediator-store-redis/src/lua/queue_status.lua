-- ARGV: 1 ttl, 2 recipient key ('' = any).
-- Returns {expired, waiting count, waiting bytes, in flight, oldest waiting ms (-1), newest (-1)}.
local now = now_ms()
local expired = expire(now)
redis.call('ZREMRANGEBYSCORE', K_LEASE, '-inf', now)
local key = ARGV[2]
local count, bytes, flying, oldest, newest = 0, 0, 0, -1, -1
if key == '' then
  -- Without a filter: whole-queue figures minus the in-flight ones (few), so this stays cheap
  -- however long the queue is.
  local leased = {}
  local leased_bytes = 0
  for _, id in ipairs(redis.call('ZRANGE', K_LEASE, 0, -1)) do
    leased[id] = true
    flying = flying + 1
    leased_bytes = leased_bytes + redis.call('HSTRLEN', K_MSG, id)
  end
  count = redis.call('ZCARD', K_ORDER) - flying
  bytes = tonumber(redis.call('GET', K_BYTES) or '0') - leased_bytes
  if count > 0 then
    local i = 0
    while true do
      local ids = redis.call('ZRANGE', K_ORDER, i, i)
      if #ids == 0 then break end
      if not leased[ids[1]] then
        oldest = parse_meta(redis.call('HGET', K_META, ids[1]))
        break
      end
      i = i + 1
    end
    i = -1
    while true do
      local ids = redis.call('ZRANGE', K_ORDER, i, i)
      if #ids == 0 then break end
      if not leased[ids[1]] then
        newest = parse_meta(redis.call('HGET', K_META, ids[1]))
        break
      end
      i = i - 1
    end
  end
else
  local start, batch = 0, 256
  while true do
    local ids = redis.call('ZRANGE', K_ORDER, start, start + batch - 1)
    if #ids == 0 then break end
    for _, id in ipairs(ids) do
      local r, _, keys = parse_meta(redis.call('HGET', K_META, id))
      if carries(keys, key) then
        if in_flight(id, now) then
          flying = flying + 1
        else
          count = count + 1
          bytes = bytes + redis.call('HSTRLEN', K_MSG, id)
          if oldest < 0 then oldest = r end
          newest = r
        end
      end
    end
    start = start + batch
  end
end
return {expired, count, bytes, flying, oldest, newest}
