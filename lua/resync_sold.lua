-- resync_sold.lua: the sweeper's correction of a showtime's sold set from booked_seats (the
-- sold set is a cache of it). Does nothing to a cold set (missing): the next warm rebuilds it.
--
-- KEYS[1] sold   KEYS[2] full (best.lua's sold-out rows: deleted when a seat is freed)
-- ARGV[1] events channel   ARGV[2] n = how many seats to add   ARGV[3..2+n] seats booked but
-- not shown sold   ARGV[3+n..] seats shown sold but no longer booked
--
-- Reply: {"ok"} | {"cold"}
local k_sold, channel, n = KEYS[1], ARGV[1], tonumber(ARGV[2])
if redis.call('SISMEMBER', k_sold, '_') == 0 then
  return {'cold'}
end
local now = now_ms()
local added, freed = {}, {}
for i = 3, 2 + n do
  added[#added + 1] = ARGV[i]
  redis.call('SADD', k_sold, ARGV[i])
end
for i = 3 + n, #ARGV do
  freed[#freed + 1] = ARGV[i]
  redis.call('SREM', k_sold, ARGV[i])
end
if #freed > 0 then
  redis.call('DEL', KEYS[2])
end
publish(channel, 'sold', added, false, now)
publish(channel, 'released', freed, false, now)
return {'ok'}
