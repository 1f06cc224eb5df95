-- Shared by every connection script: the clock and the expiry of records. Times are the Redis
-- server's (TIME), so instances whose clocks differ agree on which records have expired.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Has the record `id` expired at `now`? `expiring` is the sorted set of the records that expire,
-- scored by their expiry (unix ms); a record not in it is permanent.
local function expired_in(expiring, id, now)
  local at = redis.call('ZSCORE', expiring, id)
  return at ~= false and at ~= nil and tonumber(at) <= now
end
