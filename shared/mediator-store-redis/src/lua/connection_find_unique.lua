-- Lookup through a unique index. KEYS[1] records, KEYS[2] the index hash (by-my-verkey or
-- by-thread), KEYS[3] expiring; ARGV[1] the indexed value. Returns the record JSON, or nil (also
-- when the record has expired).
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id then return false end
if expired_in(KEYS[3], id, now_ms()) then return false end
return redis.call('HGET', KEYS[1], id)
