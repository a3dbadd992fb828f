-- queue_stats.lua: counts of one showtime's waiting room, by Redis' clock.
--
-- KEYS[1] line   KEYS[2] adm   KEYS[3] holds   KEYS[4] sold   KEYS[5] state
-- Reply: {waiting, admitted (live), expired, seats_held, seats_sold_cached, popped_total}
local now = now_ms()
local sold = redis.call('SCARD', KEYS[4])
if redis.call('SISMEMBER', KEYS[4], '_') == 1 then sold = sold - 1 end
return {
  redis.call('ZCARD', KEYS[1]),
  redis.call('ZCOUNT', KEYS[2], '(' .. fmt(now), '+inf'),
  redis.call('ZCOUNT', KEYS[2], '-inf', fmt(now)),
  redis.call('HLEN', KEYS[3]),
  sold,
  tonumber(redis.call('HGET', KEYS[5], 'popped') or '0'),
}
