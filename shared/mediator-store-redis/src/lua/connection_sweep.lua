-- Sweep. ARGV[1]: most records to remove. Removes the expired records, soonest expired first,
-- each with its index entries; returns how many it removed. An expired record that is unreadable
-- is removed too, and counted (its index entries cannot be found without it, so they stay; it
-- could never be read again, and leaving it would stall every later sweep on it).
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(due) do
  if purge_if_expired(id, now) == 5 then
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[5], id)
  end
end
return #due
