-- queue_lease.lua: the admitter's lease of one showtime's waiting room, with a fencing token.
-- Any number of processes run the admission loop; per showtime exactly one holds the lease,
-- and queue_admit.lua only acts for the current token, so an admitter that stalled past its
-- lease (GC pause, network partition) and wakes up admits nobody.
--
-- KEYS[1] lease  hash {owner, token}, expiring after ARGV[2] ms unless renewed
-- KEYS[2] fence  counter: the last token handed out (tokens only grow)
-- ARGV[1] owner id (one per process)   ARGV[2] lease ttl ms   ARGV[3] "acquire" | "release"
--
-- Reply: {"ok", token} (acquired or renewed) | {"taken"} (another owner holds it)
--        | {"released"} | {"not_owner"}
local k_lease, k_fence = KEYS[1], KEYS[2]
local owner, ttl, mode = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local current = redis.call('HMGET', k_lease, 'owner', 'token')

if mode == 'release' then
  if current[1] == owner then
    redis.call('DEL', k_lease)
    return {'released'}
  end
  return {'not_owner'}
end

if current[1] and current[1] ~= owner then
  return {'taken'}
end
local token = current[2]
if not current[1] then
  token = tostring(redis.call('INCR', k_fence))
  redis.call('HSET', k_lease, 'owner', owner, 'token', token)
  redis.call('PEXPIRE', k_fence, 7 * 86400000)
end
redis.call('PEXPIRE', k_lease, ttl)
return {'ok', token}
