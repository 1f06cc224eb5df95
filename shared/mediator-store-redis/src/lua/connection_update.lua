-- Update. ARGV as for insert. Returns 0 replaced, 2 my_verkey taken by another record, 3 thread
-- taken by another record, 4 no such record (or it has expired), 5 a stored record is unreadable
-- (nothing visible written in every case but 0: only expired records may have been removed). The
-- old index entries come from the stored record itself: the caller cannot know them without a
-- read, and a read before the script would not be atomic with it.
local id = ARGV[1]
local now = now_ms()
local gone = purge_if_expired(id, now)
if gone == 5 then return 5 end
if gone == 1 then return 4 end
local old = redis.call('HGET', KEYS[1], id)
if not old then return 4 end
if purge_expired_holders(id, now) == 5 then return 5 end
local owner = redis.call('HGET', KEYS[2], ARGV[3])
if owner and owner ~= id then return 2 end
owner = redis.call('HGET', KEYS[3], ARGV[4])
if owner and owner ~= id then return 3 end
local rec = indexed(old)
if not rec then return 5 end
unindex(id, rec)
store()
return 0
