-- Delete a connection's mediation and unregister its keys. KEYS[1] records (hash: connection id
-- -> record JSON), KEYS[2] key owners, KEYS[3] the connection's keylist; ARGV[1] the connection
-- id. Returns 1 if there was a record or a key, else 0.
local conn = ARGV[1]
local had = redis.call('HDEL', KEYS[1], conn)
local keys = redis.call('ZRANGE', KEYS[3], 0, -1)
for _, key in ipairs(keys) do
  -- Only our own registration: the owner hash is the truth about who routes a key.
  if redis.call('HGET', KEYS[2], key) == conn then
    redis.call('HDEL', KEYS[2], key)
  end
end
if #keys > 0 then
  redis.call('DEL', KEYS[3])
  had = 1
end
return had
