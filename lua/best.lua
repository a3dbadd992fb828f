-- best.lua: pick the best block of `count` adjacent free seats of one showtime and hold it for
-- one user, in one run (docs/DESIGN.md §3). What hold.lua does on success happens here too,
-- the hold's index included.
--
-- KEYS[1] holds   KEYS[2] expiry   KEYS[3] info   KEYS[4] users   KEYS[5] sold   KEYS[6] meta
-- KEYS[7] layout  hash, written by the API from PostgreSQL (src/holds/best.rs):
--                   rows = number of rows R; rows are 0..R-1 in display order (front to back)
--                   s<r> = the seat ids of row r in seat-number order, 36 characters each
--                   c<r> = one byte per seat of row r: its category's 1-based index in `cats`
--                   cats = the layout's category names, comma-separated
-- ARGV[1] hold_id        ARGV[2] user_id       ARGV[3] ttl_ms       ARGV[4] max_lifetime_ms
-- ARGV[5] max_per_user   ARGV[6] purge_limit   ARGV[7] events channel
-- KEYS[8] the hold's index (hold id -> "showtime_id:user_id"; in this slot, see infra/slots.rs)
-- KEYS[9] sale    KEYS[10] adm     (the admission gate's keys, see _admission.lua)
-- ARGV[8] count (>= 1)   ARGV[9] category name, or "" for any
-- ARGV[10] index value   ARGV[11] index ttl_ms
-- KEYS[11] full   set of the rows (their index r) whose every seat is sold, found by earlier
--                 runs: skipped without a lookup. Only unsell.lua and resync_sold.lua take a
--                 seat out of the sold set, and both delete this set; so does a rebuild of the
--                 sold set (src/holds/store/mod.rs, warm). It lives at most a minute from its
--                 first row (PEXPIRE NX), then is found again: a process of an older version,
--                 whose unsell.lua does not know this set, can hide a freed seat that long only.
--
-- The pick, among every run of `count` adjacent seats of one row that are free (not sold, not
-- in a live hold) and of the category, is the first by:
--   1. stranded seats: how many single free seats the block would leave between taken seats or
--      against a row's end (0, 1 or 2); a block that strands none always wins;
--   2. the row's distance from the middle row, |2r - (R-1)|; between two rows equally near,
--      the one further back (higher r);
--   3. the block's distance from the middle of its row, |2s + count - 1 - (n-1)| for a block
--      starting at position s of a row of n seats; then the lower s.
-- Rows are visited nearest the middle first and the scan stops after the first row that has a
-- block stranding nothing, so a busy house costs a few rows' lookups, not the whole layout; a
-- row with no seat of the named category is skipped after reading its category bytes alone.
--
-- Reply, first element the outcome:
--   {"ok", expires_at_ms, seat_id...}  the seats picked and now held, in seat order
--   {"none"}                      no such block is free (nothing written but expired holds and
--                                 the rows found sold out)
--   {"limit", seats_already_held} the user would go over max_per_user (nothing written)
--   {"closed", "started"|"cancelled"}
--   {"sale_not_open", opens_at_ms} {"not_admitted"}   refused by the admission gate
--   {"cold"}                      meta, sold cache or layout missing: rebuild, retry
local k_holds, k_expiry, k_info, k_users, k_sold, k_meta, k_layout, k_index =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local k_sale, k_adm, k_full = KEYS[9], KEYS[10], KEYS[11]
local hold_id, user = ARGV[1], ARGV[2]
local ttl, lifetime, max_per_user = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local purge_limit, channel = tonumber(ARGV[6]), ARGV[7]
local count, category = tonumber(ARGV[8]), ARGV[9]
local ID_LEN = 36
local now = now_ms()

-- Checks that need no write.
local meta = redis.call('HMGET', k_meta, 'starts_at', 'status')
local layout = redis.call('HMGET', k_layout, 'rows', 'cats')
if not meta[1] or not layout[1] or redis.call('SISMEMBER', k_sold, '_') == 0 then
  return {'cold'}
end
if meta[2] ~= 'scheduled' then
  return {'closed', 'cancelled'}
end
if now >= tonumber(meta[1]) then
  return {'closed', 'started'}
end
-- The admission gate, before any write (invariant 9): the same as hold.lua's.
local refused = admission_gate(k_sale, k_adm, user, now)
if refused then
  return refused
end
local nrows = tonumber(layout[1])

-- The requested category as the byte the layout uses for it.
local code = nil
if category ~= '' then
  local i = 0
  for name in string.gmatch(layout[2] or '', '[^,]+') do
    i = i + 1
    if name == category then code = i end
  end
  if not code then
    return {'none'}
  end
end

-- Expired holds go first, so their seats count as free and their users' counts drop.
local freed = purge_expired(k_holds, k_expiry, k_info, k_users, now, purge_limit)
publish(channel, 'expired', freed, false, now)

local held = tonumber(redis.call('HGET', k_users, user) or '0')
if held + count > max_per_user then
  return {'limit', held}
end

-- Rows nearest the middle first; of two equally near, the one further back.
local order = {}
for r = 0, nrows - 1 do order[#order + 1] = r end
table.sort(order, function(a, b)
  local da, db = math.abs(2 * a - (nrows - 1)), math.abs(2 * b - (nrows - 1))
  if da ~= db then return da < db end
  return a > b
end)

-- best = {stranded, rank, distance, start, seats of its row}
local best = nil
local function better(stranded, rank, dist, start)
  if best == nil then return true end
  if stranded ~= best[1] then return stranded < best[1] end
  if rank ~= best[2] then return rank < best[2] end
  if dist ~= best[3] then return dist < best[3] end
  return start < best[4]
end

-- Rows sold out for good (until unsell.lua or resync_sold.lua), and those this run finds so.
local full = {}
for _, r in ipairs(redis.call('SMEMBERS', k_full)) do full[tonumber(r)] = true end
local sold_out = {}
local function remember_sold_out()
  if #sold_out > 0 then
    redis.call('SADD', k_full, unpack(sold_out))
    redis.call('PEXPIRE', k_full, 60000, 'NX')
  end
end

for rank, r in ipairs(order) do
  -- A sold-out row costs nothing; a row without a seat of the category one small read (a
  -- stadium's rows come in category bands, so most rows are skipped this way).
  local ids, cats = '', ''
  if not full[r] then
    cats = redis.call('HGET', k_layout, 'c' .. r) or ''
    if code == nil or string.find(cats, string.char(code), 1, true) then
      ids = redis.call('HGET', k_layout, 's' .. r) or ''
    end
  end
  local n = math.floor(#ids / ID_LEN)
  if n >= count then
    local seats = {}
    for j = 1, n do
      seats[j] = string.sub(ids, (j - 1) * ID_LEN + 1, j * ID_LEN)
    end
    local sold = redis.call('SMISMEMBER', k_sold, unpack(seats))
    local owners = redis.call('HMGET', k_holds, unpack(seats))
    local free = {}
    local all_sold = true
    for j = 1, n do
      local f = sold[j] == 0
      if f then all_sold = false end
      if f and owners[j] then
        local _, expires = parse_owner(owners[j])
        f = expires <= now
      end
      free[j] = f
    end
    if all_sold then sold_out[#sold_out + 1] = r end
    -- `run` counts the usable seats (free and of the category) ending at j.
    local run = 0
    for j = 1, n do
      if free[j] and (code == nil or string.byte(cats, j) == code) then run = run + 1 else run = 0 end
      if run >= count then
        local s = j - count + 1
        local stranded = 0
        local left, right = s - 1, j + 1
        if left >= 1 and free[left] and (left == 1 or not free[left - 1]) then stranded = stranded + 1 end
        if right <= n and free[right] and (right == n or not free[right + 1]) then stranded = stranded + 1 end
        local dist = math.abs(2 * (s - 1) + count - 1 - (n - 1))
        if better(stranded, rank, dist, s) then
          best = {stranded, rank, dist, s, seats}
        end
      end
    end
    if best ~= nil and best[1] == 0 then
      break
    end
  end
end

remember_sold_out()
if best == nil then
  return {'none'}
end

-- Take the block, exactly as hold.lua takes named seats.
local picked = {}
for j = best[4], best[4] + count - 1 do
  picked[#picked + 1] = best[5][j]
end
local expires = now + ttl
local owner = hold_id .. ':' .. fmt(expires)
for _, seat in ipairs(picked) do
  redis.call('HSET', k_holds, seat, owner)
end
redis.call('ZADD', k_expiry, expires, hold_id)
redis.call('HSET', k_info, hold_id, cjson.encode({u = user, e = expires, c = now + lifetime, st = 'held', s = picked}))
redis.call('HINCRBY', k_users, user, #picked)
redis.call('SET', k_index, ARGV[10], 'PX', ARGV[11])
for _, k in ipairs({k_holds, k_expiry, k_info, k_users}) do
  redis.call('PEXPIRE', k, lifetime + 60000)
end
publish(channel, 'held', picked, hold_id, now)
local reply = {'ok', expires}
for _, seat in ipairs(picked) do reply[#reply + 1] = seat end
return reply
