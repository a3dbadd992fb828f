-- sell.lua: after the booking committed in PostgreSQL, its seats become sold and the hold goes.
-- Idempotent: selling twice changes nothing more.
--
-- KEYS[1] holds   KEYS[2] expiry   KEYS[3] info   KEYS[4] users   KEYS[5] sold
-- KEYS[6] the hold's index
-- ARGV[1] hold_id   ARGV[2] events channel   ARGV[3] sold-set ttl_ms (used when it has none)
-- ARGV[4..] seat ids
--
-- Reply: {"ok"}
local k_holds, k_expiry, k_info, k_users, k_sold = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local k_index = KEYS[6]
local hold_id, channel, sold_ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local seats = {}
for i = 4, #ARGV do
  seats[#seats + 1] = ARGV[i]
  redis.call('SADD', k_sold, ARGV[i])
end
if redis.call('PTTL', k_sold) < 0 then
  redis.call('PEXPIRE', k_sold, sold_ttl)
end
local raw = redis.call('HGET', k_info, hold_id)
if raw then
  drop_hold(k_holds, k_expiry, k_info, k_users, hold_id, cjson.decode(raw))
else
  for _, seat in ipairs(seats) do
    local cur = redis.call('HGET', k_holds, seat)
    if cur and parse_owner(cur) == hold_id then
      redis.call('HDEL', k_holds, seat)
    end
  end
  redis.call('ZREM', k_expiry, hold_id)
end
redis.call('DEL', k_index)
publish(channel, 'sold', seats, hold_id, now_ms())
return {'ok'}
