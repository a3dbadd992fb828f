-- seatmap.lua: read-only status of every held or sold seat of one showtime.
--
-- KEYS[1] holds   KEYS[2] info   KEYS[3] sold
-- ARGV: none
--
-- Reply: {"cold"} (sold cache missing: rebuild, retry)
--      | {"ok", {sold seat ids}, {seat_id, user_id, hold_id, seat_id, user_id, hold_id, ...} of live holds}
local k_holds, k_info, k_sold = KEYS[1], KEYS[2], KEYS[3]
if redis.call('SISMEMBER', k_sold, '_') == 0 then
  return {'cold'}
end
local now = now_ms()
local sold = {}
for _, seat in ipairs(redis.call('SMEMBERS', k_sold)) do
  if seat ~= '_' then sold[#sold + 1] = seat end
end
local held, users = {}, {}
local all = redis.call('HGETALL', k_holds)
for i = 1, #all, 2 do
  local hold_id, expires = parse_owner(all[i + 1])
  if expires > now then
    local user = users[hold_id]
    if user == nil then
      local raw = redis.call('HGET', k_info, hold_id)
      user = raw and cjson.decode(raw).u or ''
      users[hold_id] = user
    end
    held[#held + 1] = all[i]
    held[#held + 1] = user
    held[#held + 1] = hold_id
  end
end
return {'ok', sold, held}
