-- Delete. ARGV: id. Returns 1 deleted, 0 no such record (an expired one is removed, and 0), 5 the
-- stored record is unreadable (kept: its index entries cannot be found without it).
local id = ARGV[1]
local gone = purge_if_expired(id, now_ms())
if gone ~= 0 then return gone == 1 and 0 or gone end
local old = redis.call('HGET', KEYS[1], id)
if not old then return 0 end
local rec = indexed(old)
if not rec then return 5 end
unindex(id, rec)
redis.call('HDEL', KEYS[1], id)
return 1
