-- keylist-update of one connection, the whole batch in one script (that is what makes it atomic).
-- KEYS[1] key owners (hash: base58 -> connection id), KEYS[2] the connection's keylist (sorted
-- set: base58 scored by registration sequence). ARGV: connection id, then pairs of action
-- ("add" or "remove") and key (base58). Returns one code per pair, in order: 0 success,
-- 1 no_change, 2 client_error.
local conn = ARGV[1]
-- The next sequence continues after the newest key, so a key added again goes to the end.
local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local seq = 0
if newest[2] then seq = tonumber(newest[2]) end
local results = {}
for i = 2, #ARGV - 1, 2 do
  local action, key = ARGV[i], ARGV[i + 1]
  local owner = redis.call('HGET', KEYS[1], key)
  local result
  if action == 'add' then
    if owner == conn then
      result = 1
    elseif owner then
      result = 2
    else
      seq = seq + 1
      redis.call('HSET', KEYS[1], key, conn)
      redis.call('ZADD', KEYS[2], seq, key)
      result = 0
    end
  elseif owner == conn then
    redis.call('HDEL', KEYS[1], key)
    redis.call('ZREM', KEYS[2], key)
    result = 0
  else
    result = 1
  end
  results[#results + 1] = result
end
return results
