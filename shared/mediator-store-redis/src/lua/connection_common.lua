-- Shared by the connection scripts that write. KEYS of every one of them:
--   KEYS[1] records (hash: id -> record JSON)
--   KEYS[2] by-my-verkey (hash: base58 -> id)
--   KEYS[3] by-thread (hash: thread id -> id)
--   KEYS[4] by-their-verkey (sorted set, all scores 0: "<base58> <id>")
--   KEYS[5] expiring (sorted set: id of each record that expires -> its expiry, unix ms)
-- Every key is passed in KEYS (never built here), and all five share the store's hash tag.
-- ARGV of the scripts that store a record: id, record JSON, my_verkey, thread_id, expiry (unix
-- ms, '' for a permanent record), their keys (base58)...

-- The index entries of a stored record. The field names are ConnectionRecord's serde names (a
-- VerKey serialises as base58); the contract suite fails at once if they drift. nil when the
-- stored value is not such a record, so the caller reports it as corrupt instead of guessing.
local function indexed(json)
  local ok, rec = pcall(cjson.decode, json)
  if not ok or type(rec) ~= 'table' or type(rec.my_verkey) ~= 'string'
      or type(rec.thread_id) ~= 'string' or type(rec.their_keys) ~= 'table' then
    return nil
  end
  for _, key in ipairs(rec.their_keys) do
    if type(key) ~= 'string' then return nil end
  end
  return rec
end

-- Drops the index entries of `rec`, but only those that still name `id`: a unique entry that
-- another record holds is that record's, never ours to delete.
local function unindex(id, rec)
  if redis.call('HGET', KEYS[2], rec.my_verkey) == id then
    redis.call('HDEL', KEYS[2], rec.my_verkey)
  end
  if redis.call('HGET', KEYS[3], rec.thread_id) == id then
    redis.call('HDEL', KEYS[3], rec.thread_id)
  end
  for _, key in ipairs(rec.their_keys) do
    redis.call('ZREM', KEYS[4], key .. ' ' .. id)
  end
  redis.call('ZREM', KEYS[5], id)
end

-- Stores the record given in ARGV (id, JSON, my_verkey, thread_id, expiry, their keys...) with
-- its index entries.
local function store()
  local id = ARGV[1]
  redis.call('HSET', KEYS[1], id, ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[3], id)
  redis.call('HSET', KEYS[3], ARGV[4], id)
  if ARGV[5] ~= '' then
    redis.call('ZADD', KEYS[5], ARGV[5], id)
  end
  for i = 6, #ARGV do
    redis.call('ZADD', KEYS[4], 0, ARGV[i] .. ' ' .. id)
  end
end

-- Removes the record `id` with all its index entries when it has expired at `now` (an expired
-- record no longer exists for any operation, so its identities are free). Returns 1 removed, 0
-- not expired (or no such record), 5 expired but unreadable (kept: its index entries cannot be
-- found without it).
local function purge_if_expired(id, now)
  if not expired_in(KEYS[5], id, now) then return 0 end
  local old = redis.call('HGET', KEYS[1], id)
  if old then
    local rec = indexed(old)
    if not rec then return 5 end
    unindex(id, rec)
    redis.call('HDEL', KEYS[1], id)
  end
  redis.call('ZREM', KEYS[5], id)
  return 1
end

-- Frees the unique identities (`my_verkey`, thread) of the record in ARGV that expired records
-- other than `id` hold. Returns 5 when one of them is unreadable, else 0.
local function purge_expired_holders(id, now)
  for _, index in ipairs({{KEYS[2], ARGV[3]}, {KEYS[3], ARGV[4]}}) do
    local holder = redis.call('HGET', index[1], index[2])
    if holder and holder ~= id and purge_if_expired(holder, now) == 5 then return 5 end
  end
  return 0
end
