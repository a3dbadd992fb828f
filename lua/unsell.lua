-- unsell.lua: a cancelled booking's seats are free again (after the PostgreSQL delete).
--
-- KEYS[1] sold   KEYS[2] full (best.lua's sold-out rows: deleted, a row may have a free seat again)
-- ARGV[1] events channel   ARGV[2] sold-set ttl_ms (refreshed)   ARGV[3..] seat ids
--
-- Reply: {"ok"}
local k_sold, channel = KEYS[1], ARGV[1]
local seats = {}
for i = 3, #ARGV do
  seats[#seats + 1] = ARGV[i]
  redis.call('SREM', k_sold, ARGV[i])
end
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', k_sold) == 1 then
  redis.call('PEXPIRE', k_sold, ARGV[2])
end
publish(channel, 'released', seats, false, now_ms())
return {'ok'}
