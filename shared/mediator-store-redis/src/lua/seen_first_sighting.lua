-- KEYS: 1 the connection's seen ids (ZSET: stored id -> expiry, unix ms; the Redis server's clock).
-- ARGV: 1 stored id, 2 window ms, 3 max ids per connection.
-- Returns 1 when the id is new (and records it), 0 for a repeat within its window.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, cap = tonumber(ARGV[2]), tonumber(ARGV[3])
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if expiry and tonumber(expiry) > now then
  return 0
end
if window <= 0 then
  return 1
end
-- The record is the script's first write, so a Redis out of memory refuses it (a script that
-- has written once is let through OOM for the rest of it): a refused record fails the message
-- and makes /readyz say not ready, rather than let it through unrecorded.
redis.call('ZADD', KEYS[1], now + window, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local over = redis.call('ZCARD', KEYS[1]) - cap
if over > 0 then
  redis.call('ZPOPMIN', KEYS[1], over)
end
-- The key lives as long as its latest entry: a connection that falls silent leaves nothing.
local latest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if latest[2] then
  redis.call('PEXPIREAT', KEYS[1], tonumber(latest[2]))
end
return 1
