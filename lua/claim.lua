-- claim.lua: a payment worker, having charged, claims the seats of a hold before writing the
-- booking. Fencing by hold id: a seat counts as ours when this hold owns it or nobody holds it
-- (our hold expired unnoticed, or Redis lost its keys); it is lost when it is sold or another
-- live hold owns it. Claiming (re)takes every seat for this hold for claim_ttl_ms.
--
-- KEYS[1] holds   KEYS[2] expiry   KEYS[3] info   KEYS[4] users   KEYS[5] sold
-- ARGV[1] hold_id   ARGV[2] user_id   ARGV[3] claim_ttl_ms   ARGV[4..] seat ids
--
-- Reply: {"ok"} | {"lost", seat_id...} (nothing written)
local k_holds, k_expiry, k_info, k_users, k_sold = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local hold_id, user, claim_ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local seats, lost = {}, {}
for i = 4, #ARGV do
  local seat = ARGV[i]
  seats[#seats + 1] = seat
  if redis.call('SISMEMBER', k_sold, seat) == 1 then
    lost[#lost + 1] = seat
  else
    local cur = redis.call('HGET', k_holds, seat)
    if cur then
      local owner, expires = parse_owner(cur)
      if owner ~= hold_id and expires > now then
        lost[#lost + 1] = seat
      end
    end
  end
end
if #lost > 0 then
  local reply = {'lost'}
  for _, seat in ipairs(lost) do reply[#reply + 1] = seat end
  return reply
end
local expires = now + claim_ttl
local owner = hold_id .. ':' .. fmt(expires)
for _, seat in ipairs(seats) do
  redis.call('HSET', k_holds, seat, owner)
end
local raw = redis.call('HGET', k_info, hold_id)
if raw then
  local info = cjson.decode(raw)
  info.e, info.st = expires, 'claimed'
  if info.c < expires then info.c = expires end
  redis.call('HSET', k_info, hold_id, cjson.encode(info))
else
  redis.call('HSET', k_info, hold_id, cjson.encode({u = user, e = expires, c = expires, st = 'claimed', s = seats}))
  redis.call('HINCRBY', k_users, user, #seats)
end
redis.call('ZADD', k_expiry, expires, hold_id)
return {'ok'}
