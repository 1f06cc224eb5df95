-- Insert. ARGV: id, record JSON, my_verkey, thread_id, expiry ('' none), their keys (base58)...
-- Returns 0 stored, 1 id taken, 2 my_verkey taken, 3 thread taken (nothing written then), 5 an
-- expired record holding one of them is unreadable. Identities of expired records are free: those
-- records are removed first, with their index entries.
local now = now_ms()
if purge_if_expired(ARGV[1], now) == 5 then return 5 end
if purge_expired_holders(ARGV[1], now) == 5 then return 5 end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 1 then return 2 end
if redis.call('HEXISTS', KEYS[3], ARGV[4]) == 1 then return 3 end
store()
return 0
