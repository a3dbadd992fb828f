-- hold.lua: hold N seats of one showtime for one user, all or nothing.
--
-- KEYS[1] holds   KEYS[2] expiry   KEYS[3] info   KEYS[4] users   KEYS[5] sold   KEYS[6] meta
-- KEYS[7] sale    KEYS[8] adm      (the admission gate's keys, see _admission.lua)
-- KEYS[9] the hold's index (hold id -> "showtime_id:user_id"; in this slot, see infra/slots.rs)
-- ARGV[1] hold_id        ARGV[2] user_id       ARGV[3] ttl_ms       ARGV[4] max_lifetime_ms
-- ARGV[5] max_per_user   ARGV[6] purge_limit   ARGV[7] events channel
-- ARGV[8] index value    ARGV[9] index ttl_ms (outlives the hold, to tell "expired" from "never")
-- ARGV[10..] seat ids (distinct, validated against the layout by the caller)
--
-- Reply, first element the outcome:
--   {"ok", expires_at_ms}
--   {"unavailable", seat_id...}   seats sold or held by a live hold (nothing written)
--   {"limit", seats_already_held} the user would go over max_per_user (nothing written)
--   {"closed", "started"|"cancelled"}
--   {"sale_not_open", opens_at_ms} {"not_admitted"}   refused by the admission gate
--   {"cold"}                      meta, sold cache or sale mirror missing: rebuild, retry
local k_holds, k_expiry, k_info, k_users, k_sold, k_meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local k_sale, k_adm, k_index = KEYS[7], KEYS[8], KEYS[9]
local hold_id, user = ARGV[1], ARGV[2]
local ttl, lifetime, max_per_user = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local purge_limit, channel = tonumber(ARGV[6]), ARGV[7]
local now = now_ms()

-- Checks that need no write.
local meta = redis.call('HMGET', k_meta, 'starts_at', 'status')
if not meta[1] or redis.call('SISMEMBER', k_sold, '_') == 0 then
  return {'cold'}
end
if meta[2] ~= 'scheduled' then
  return {'closed', 'cancelled'}
end
if now >= tonumber(meta[1]) then
  return {'closed', 'started'}
end
-- The admission gate, before any write (invariant 9).
local refused = admission_gate(k_sale, k_adm, user, now)
if refused then
  return refused
end

-- Expired holds go first, so their seats count as free and their users' counts drop.
local freed = purge_expired(k_holds, k_expiry, k_info, k_users, now, purge_limit)
publish(channel, 'expired', freed, false, now)

local seats = {}
local unavailable = {}
local FIRST_SEAT = 10
for i = FIRST_SEAT, #ARGV do
  local seat = ARGV[i]
  seats[#seats + 1] = seat
  if redis.call('SISMEMBER', k_sold, seat) == 1 then
    unavailable[#unavailable + 1] = seat
  else
    local cur = redis.call('HGET', k_holds, seat)
    if cur then
      local _, expires = parse_owner(cur)
      if expires > now then
        unavailable[#unavailable + 1] = seat
      end
    end
  end
end
if #unavailable > 0 then
  local reply = {'unavailable'}
  for _, seat in ipairs(unavailable) do reply[#reply + 1] = seat end
  return reply
end

local held = tonumber(redis.call('HGET', k_users, user) or '0')
if held + #seats > max_per_user then
  return {'limit', held}
end

-- All checks passed: take every seat.
local expires = now + ttl
local owner = hold_id .. ':' .. fmt(expires)
for _, seat in ipairs(seats) do
  redis.call('HSET', k_holds, seat, owner)
end
redis.call('ZADD', k_expiry, expires, hold_id)
redis.call('HSET', k_info, hold_id, cjson.encode({u = user, e = expires, c = now + lifetime, st = 'held', s = seats}))
redis.call('HINCRBY', k_users, user, #seats)
redis.call('SET', k_index, ARGV[8], 'PX', ARGV[9])
-- Every hold in these keys is dead by now + lifetime: let idle showtimes clean themselves up.
for _, k in ipairs({k_holds, k_expiry, k_info, k_users}) do
  redis.call('PEXPIRE', k, lifetime + 60000)
end
publish(channel, 'held', seats, hold_id, now)
return {'ok', expires}
