-- Insert. ARGV: id, record JSON, my_verkey, thread_id, their keys (base58)...
-- Returns 0 stored, 1 id taken, 2 my_verkey taken, 3 thread taken (nothing written then).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 1 then return 2 end
if redis.call('HEXISTS', KEYS[3], ARGV[4]) == 1 then return 3 end
store()
return 0
