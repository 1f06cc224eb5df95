-- ARGV: 1 ttl. Expires the queue's old messages; returns {expired, 1 if the queue is empty}.
local expired = expire(now_ms())
local empty = 0
if redis.call('EXISTS', K_ORDER) == 0 then empty = 1 end
return {expired, empty}
