-- Shared by the connection scripts that write. KEYS of every one of them:
--   KEYS[1] records (hash: id -> record JSON)
--   KEYS[2] by-my-verkey (hash: base58 -> id)
--   KEYS[3] by-thread (hash: thread id -> id)
--   KEYS[4] by-their-verkey (sorted set, all scores 0: "<base58> <id>")
-- Every key is passed in KEYS (never built here), and all four share the store's hash tag.

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
end

-- Stores the record given in ARGV (id, JSON, my_verkey, thread_id, their keys...) with its
-- index entries.
local function store()
  local id = ARGV[1]
  redis.call('HSET', KEYS[1], id, ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[3], id)
  redis.call('HSET', KEYS[3], ARGV[4], id)
  for i = 5, #ARGV do
    redis.call('ZADD', KEYS[4], 0, ARGV[i] .. ' ' .. id)
  end
end
