-- sweep.lua: drop the expired holds of one showtime (the sweeper runs it on an interval; every
-- hold.lua does the same first). Safe to run from several sweepers at once.
--
-- KEYS[1] holds   KEYS[2] expiry   KEYS[3] info   KEYS[4] users
-- ARGV[1] limit (holds per call)   ARGV[2] events channel
--
-- Reply: {holds_dropped, holds_remaining}
local k_holds, k_expiry, k_info, k_users = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = now_ms()
local freed, dropped = purge_expired(k_holds, k_expiry, k_info, k_users, now, tonumber(ARGV[1]))
publish(ARGV[2], 'expired', freed, false, now)
return {dropped, redis.call('ZCARD', k_expiry)}
