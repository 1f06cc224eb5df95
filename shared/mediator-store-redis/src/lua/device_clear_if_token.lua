-- KEYS: 1 the connection's device info (string: DeviceInfo JSON).
-- ARGV: 1 the token the provider reported gone.
-- Returns 1 cleared (the stored token was ARGV[1]), 0 kept (nothing stored, or another token: a
-- registration made since the notification was sent), 2 the stored value is unreadable (kept).
local stored = redis.call('GET', KEYS[1])
if not stored then
  return 0
end
local ok, info = pcall(cjson.decode, stored)
if not ok or type(info) ~= 'table' or type(info.token) ~= 'string' then
  return 2
end
if info.token ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
