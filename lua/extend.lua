-- extend.lua: checkout extends a live hold once to cover payment, never past its cap.
-- Repeating it (a retried checkout) changes nothing and answers the same expiry.
--
-- KEYS[1] holds   KEYS[2] expiry   KEYS[3] info
-- ARGV[1] hold_id   ARGV[2] user_id   ARGV[3] extension_ms (from now)
--
-- Reply: {"ok", expires_at_ms, seat_id...} | {"not_found"} | {"expired"}
local k_holds, k_expiry, k_info = KEYS[1], KEYS[2], KEYS[3]
local hold_id, user, extension = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local raw = redis.call('HGET', k_info, hold_id)
if not raw then
  return {'not_found'}
end
local info = cjson.decode(raw)
if info.u ~= user then
  return {'not_found'}
end
if info.e <= now then
  return {'expired'}
end
local function answer(expires)
  local reply = {'ok', expires}
  for _, seat in ipairs(info.s) do reply[#reply + 1] = seat end
  return reply
end
if info.st ~= 'held' then
  return answer(info.e)
end
local expires = math.min(now + extension, info.c)
if expires < info.e then
  expires = info.e
end
local owner = hold_id .. ':' .. fmt(expires)
for _, seat in ipairs(info.s) do
  local cur = redis.call('HGET', k_holds, seat)
  if cur and parse_owner(cur) == hold_id then
    redis.call('HSET', k_holds, seat, owner)
  end
end
info.e = expires
info.st = 'checkout'
redis.call('HSET', k_info, hold_id, cjson.encode(info))
redis.call('ZADD', k_expiry, expires, hold_id)
return answer(expires)
