-- ARGV: 1 ttl. Expires the queue's old messages; returns {expired, messages, bytes}.
local expired = expire(now_ms())
return {expired, redis.call('ZCARD', K_ORDER), tonumber(redis.call('GET', K_BYTES) or '0')}
