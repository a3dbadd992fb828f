-- queue_admit.lua: one admission step of one showtime's waiting room (DESIGN.md §6a).
--
-- KEYS[1] sale   hash  the sale mirror {opens_at, queue, rate, window_ms, status, ...}
-- KEYS[2] line   zset  waiting users by score (see queue_join.lua)
-- KEYS[3] adm    zset  admitted users by admitted_until_ms
-- KEYS[4] state  hash  {credit, at, popped, opened, expired_upto, fresh}: the admitter's memory
-- KEYS[5] lease  hash  {owner, token} (see queue_lease.lua)
-- ARGV[1] fencing token   ARGV[2] queue events channel (PUBLISHed on one Redis, SPUBLISHed on a
--   Redis Cluster: SEAT_PUBLISH, see lua/_prelude.lua; it carries the showtime's tag)
-- ARGV[3] burst ms: admissions credited at most for this long (after a pause of the admitter)
-- ARGV[4] most admissions per call
--
-- Admission is a token bucket in Redis: credit grows by rate/60000 per ms since the last step
-- (from opens_at on, never while paused or while nobody waits), and whole credits admit users
-- from the head of the line (ZPOPMIN), each until now + window_ms. The fraction carries over, so
-- the rate achieved is the configured one whatever the step interval. Whenever admission
-- (re)starts (at opening, on resume, when the line was empty) the bucket starts with one credit,
-- so the head of the line is let in at once rather than after a full interval.
--
-- Reply: {"fenced"} (not the lease's token: nothing done) | {"cold"} | {"no_queue"}
--        | {"ok", admitted, newly_expired, waiting, popped_total, paused}
local k_sale, k_line, k_adm, k_state, k_lease = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token, channel = ARGV[1], ARGV[2]
local burst_ms, max_batch = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()

if redis.call('HGET', k_lease, 'token') ~= token then
  return {'fenced'}
end
local sale = redis.call('HMGET', k_sale, 'opens_at', 'queue', 'rate', 'window_ms', 'status', 'ends_at')
if not sale[1] then
  return {'cold'}
end
if sale[2] ~= '1' or now > tonumber(sale[6] or '0') then
  return {'no_queue'}
end
local opens_at, rate, window = tonumber(sale[1]), tonumber(sale[3]), tonumber(sale[4])
local paused = 0
if sale[5] == 'paused' then paused = 1 end

local st = redis.call('HMGET', k_state, 'credit', 'at', 'popped', 'opened', 'expired_upto', 'fresh')
local fresh = st[6] ~= '0'
local credit = tonumber(st[1] or '0')
local at = tonumber(st[2] or '0')
local popped = tonumber(st[3] or '0')

-- Admissions that ran out since the last step (for the metric).
local upto = tonumber(st[5] or '0')
local newly_expired = 0
if now > upto then
  newly_expired = redis.call('ZCOUNT', k_adm, '(' .. fmt(upto), fmt(now))
end

local waiting = redis.call('ZCARD', k_line)
local admitted = 0
if now < opens_at then
  credit, at, fresh = 0, now, true
else
  if st[4] ~= '1' then
    redis.call('HSET', k_state, 'opened', '1')
    redis.call(SEAT_PUBLISH, channel, cjson.encode({type = 'opened', popped = popped, at = now}))
  end
  if paused == 1 or waiting == 0 then
    credit, at, fresh = 0, now, true
  else
    if at < opens_at then at = opens_at end
    local elapsed = now - at
    if elapsed > burst_ms then elapsed = burst_ms end
    credit = credit + elapsed * rate / 60000
    if fresh and credit < 1 then credit = 1 end
    fresh = false
    local cap = rate * burst_ms / 60000
    if cap < 1 then cap = 1 end
    if credit > cap then credit = cap end
    local n = math.floor(credit)
    if n > max_batch then n = max_batch end
    if n > waiting then n = waiting end
    if n > 0 then
      local items = redis.call('ZPOPMIN', k_line, n)
      local admitted_until = now + window
      for i = 1, #items, 2 do
        redis.call('ZADD', k_adm, admitted_until, items[i])
      end
      admitted = #items / 2
      credit = credit - admitted
      popped = popped + admitted
      waiting = waiting - admitted
      redis.call(SEAT_PUBLISH, channel,
        cjson.encode({type = 'admitted', count = admitted, popped = popped, until_ms = admitted_until, at = now}))
    end
    at = now
  end
end

local fresh_flag = '0'
if fresh then fresh_flag = '1' end
redis.call('HSET', k_state, 'credit', tostring(credit), 'at', fmt(at), 'popped', fmt(popped),
  'expired_upto', fmt(now), 'fresh', fresh_flag)
local ttl = tonumber(sale[6] or '0') + 86400000 - now
if ttl < 3600000 then ttl = 3600000 end
redis.call('PEXPIRE', k_state, ttl)
redis.call('PEXPIRE', k_adm, ttl)
return {'ok', admitted, newly_expired, waiting, popped, paused}
