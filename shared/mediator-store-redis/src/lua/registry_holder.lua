-- KEYS: sessions. ARGV: connection. Returns {} or {instance, session} while its lease runs.
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {} end
local instance, session, until_ms = parse(v)
if until_ms and until_ms > now_ms() then return {instance, session} end
return {}
