-- ARGV: 1 ttl, 2.. ids. Removes those in the queue; returns how many.
local n = 0
for i = 2, #ARGV do
  if redis.call('HEXISTS', K_MSG, ARGV[i]) == 1 then
    drop(ARGV[i])
    n = n + 1
  end
end
if n > 0 then cleanup_if_empty() end
return n
