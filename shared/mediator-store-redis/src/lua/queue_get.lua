-- ARGV: 1 ttl, 2 id. Returns {expired, payload or false, meta or false}.
local expired = expire(now_ms())
return {expired, redis.call('HGET', K_MSG, ARGV[2]), redis.call('HGET', K_META, ARGV[2])}
