-- Shared by the live-session registry scripts. KEYS[1]: the hash connection id ->
-- "<instance> <session> <lease end ms>"; KEYS[2] (when given): the set of the connections one
-- instance holds. Times are the Redis server's.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function parse(v)
  local instance, session, until_ms = string.match(v, '^(%S+) (%d+) (%d+)$')
  return instance, session, tonumber(until_ms)
end
