-- Admission gate of on-sales (DESIGN.md §6a, invariant 9). Prepended (after _prelude.lua) to
-- every script that grants holds, so "sale not open" and "not admitted" are decided in the same
-- atomic script that takes the seats: no check-then-act window. It reads, never writes.
--
-- Keys of one showtime (hash tag {st:<id>}), passed in by the caller:
--   sale  hash  {opens_at = ms, queue = "0"|"1", admission = "enforced"|"fail_open",
--               rate = admit_per_minute, window_ms, status = "running"|"paused", ends_at = ms}
--               mirrored from PostgreSQL (showtime_sales). Written for every warm showtime,
--               also one without settings (opens_at = 0, queue = "0"), so a missing key always
--               means "cold: rebuild from PostgreSQL", never "no settings".
--   adm   zset  user_id by admitted_until_ms: everyone the admitter let in, and until when.
--
-- admission_gate(k_sale, k_adm, user, now) returns nil when `user` may hold now, else the reply
-- the calling script must return at once (before any write):
--   {"cold"}                       the sale mirror is missing
--   {"sale_not_open", opens_at_ms} before the opening time
--   {"not_admitted"}               a queued sale and the user holds no live admission
local function admission_gate(k_sale, k_adm, user, now)
  local sale = redis.call('HMGET', k_sale, 'opens_at', 'queue', 'admission')
  if not sale[1] then
    return {'cold'}
  end
  if now < tonumber(sale[1]) then
    return {'sale_not_open', sale[1]}
  end
  if sale[2] == '1' and sale[3] ~= 'fail_open' then
    local admitted_until = redis.call('ZSCORE', k_adm, user)
    if not admitted_until or tonumber(admitted_until) <= now then
      return {'not_admitted'}
    end
  end
  return nil
end
