-- reopen.lua: a checkout that failed after extend.lua gives the hold back to its owner, who may
-- then release it or check it out again. It keeps its (capped) expiry.
--
-- KEYS[1] info
-- ARGV[1] hold_id   ARGV[2] user_id
--
-- Reply: {"ok"} | {"not_found"}
local k_info, hold_id, user = KEYS[1], ARGV[1], ARGV[2]
local raw = redis.call('HGET', k_info, hold_id)
if not raw then
  return {'not_found'}
end
local info = cjson.decode(raw)
if info.u ~= user or info.st ~= 'checkout' then
  return {'not_found'}
end
info.st = 'held'
redis.call('HSET', k_info, hold_id, cjson.encode(info))
return {'ok'}
