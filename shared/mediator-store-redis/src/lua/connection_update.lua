-- Update. ARGV as for insert. Returns 0 replaced, 2 my_verkey taken by another record, 3 thread
-- taken by another record, 4 no such record, 5 the stored record is unreadable (nothing written
-- in every case but 0). The old index entries come from the stored record itself: the caller
-- cannot know them without a read, and a read before the script would not be atomic with it.
local id = ARGV[1]
local old = redis.call('HGET', KEYS[1], id)
if not old then return 4 end
local owner = redis.call('HGET', KEYS[2], ARGV[3])
if owner and owner ~= id then return 2 end
owner = redis.call('HGET', KEYS[3], ARGV[4])
if owner and owner ~= id then return 3 end
local rec = indexed(old)
if not rec then return 5 end
unindex(id, rec)
store()
return 0
