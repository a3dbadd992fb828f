-- release.lua: the owner gives a hold back; its seats are free at once.
--
-- KEYS[1] holds   KEYS[2] expiry   KEYS[3] info   KEYS[4] users   KEYS[5] the hold's index
-- ARGV[1] hold_id   ARGV[2] user_id   ARGV[3] events channel
-- ARGV[4] "1" to release a hold that is in checkout or claimed (payment workers), else "0"
--
-- Reply: {"ok"} | {"not_found"} (no such hold, or another user's) | {"locked"} (payment running)
--        | {"expired"} (the hold's data is gone but its index, which outlives it, names this user)
--
-- The caller need not read the index first: the owner is checked here, in the same atomic step,
-- so an API instance that knows the hold's showtime releases it in one command.
local k_holds, k_expiry, k_info, k_users, k_index = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local hold_id, user, channel, force = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local raw = redis.call('HGET', k_info, hold_id)
if not raw then
  -- Index value "showtime_id:user_id" (hold.lua): the hold existed, and was this user's.
  local indexed = redis.call('GET', k_index)
  if indexed and string.sub(indexed, -(#user + 1)) == ':' .. user then
    return {'expired'}
  end
  return {'not_found'}
end
local info = cjson.decode(raw)
if info.u ~= user then
  return {'not_found'}
end
if info.st ~= 'held' and not force then
  return {'locked'}
end
local freed = drop_hold(k_holds, k_expiry, k_info, k_users, hold_id, info)
redis.call('DEL', k_index)
publish(channel, 'released', freed, hold_id, now_ms())
return {'ok'}
