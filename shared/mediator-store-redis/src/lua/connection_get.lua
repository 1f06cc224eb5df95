-- Get. KEYS[1] records, KEYS[2] expiring; ARGV[1] the id. Returns the record JSON, or nil when
-- there is none or it has expired.
if expired_in(KEYS[2], ARGV[1], now_ms()) then return false end
return redis.call('HGET', KEYS[1], ARGV[1])
