-- Lookup through a unique index. KEYS[1] records, KEYS[2] the index hash (by-my-verkey or
-- by-thread); ARGV[1] the indexed value. Returns the record JSON, or nil.
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id then return false end
return redis.call('HGET', KEYS[1], id)
