-- queue_join.lua: join the waiting room of one showtime, or read one's entry (DESIGN.md §6a).
--
-- KEYS[1] sale    hash   the sale mirror (see _admission.lua)
-- KEYS[2] line    zset   user_id by score: who waits, in admission order
-- KEYS[3] joined  hash   user_id -> "<joined_at_ms>:<score>" (one entry per user, kept after
--                        admission: the invariant checker reads join order and place from it)
-- KEYS[4] adm     zset   user_id by admitted_until_ms
-- KEYS[5] seq     string counter of the joiners after opening
-- KEYS[6] state   hash   the admitter's state; `popped` = users admitted so far
-- ARGV[1] "join" | "peek"   ARGV[2] user_id
-- ARGV[3] a uniformly random integer in [0, 2^52), drawn from the OS RNG by the caller
--
-- The shuffle: whoever joins before opens_at (by Redis' clock) gets the random ARGV[3] as score;
-- whoever joins later gets 2^52 + n (n = 1, 2, ... in order of joining), above every pre-opening
-- score. Scores stay inside Redis (no reply shows one), so at opening the order of the
-- pre-opening joiners is a uniform random permutation, fixed without any work at opening time;
-- positions are ZRANK, O(log n).
--
-- Reply: {outcome, state, joined_at_ms, rank, admitted_until_ms, opened, popped}
--   outcome  "created" | "existing" | "not_joined" (peek of a user who never joined)
--            | "no_queue" (the sale has no waiting room) | "cold" (sale mirror missing)
--   state    "waiting" | "admitted" | "expired";  rank 0-based, -1 before opening or not waiting
--   admitted_until_ms -1 when never admitted;  opened 1 once now >= opens_at
--   popped   read in the same step as rank: admissions only ever pop the head of the line, so a
--            waiting user's rank + popped stays constant, and streams follow the place from the
--            `popped` of each `admitted` event without asking Redis again
local k_sale, k_line, k_joined, k_adm, k_seq, k_state = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local mode, user, random_score = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()

local sale = redis.call('HMGET', k_sale, 'opens_at', 'queue', 'ends_at')
if not sale[1] then
  return {'cold'}
end
if sale[2] ~= '1' then
  return {'no_queue'}
end
local opens_at = tonumber(sale[1])
local opened = 0
if now >= opens_at then opened = 1 end

local outcome = 'existing'
local entry = redis.call('HGET', k_joined, user)
if not entry then
  if mode ~= 'join' then
    return {'not_joined'}
  end
  local score
  if opened == 0 then
    score = random_score
  else
    score = fmt(4503599627370496 + redis.call('INCR', k_seq))
  end
  entry = fmt(now) .. ':' .. score
  redis.call('ZADD', k_line, score, user)
  redis.call('HSET', k_joined, user, entry)
  -- The waiting room lives until a day after the showtime ends.
  local ttl = tonumber(sale[3] or '0') + 86400000 - now
  if ttl < 3600000 then ttl = 3600000 end
  for _, k in ipairs({k_line, k_joined, k_seq}) do
    redis.call('PEXPIRE', k, ttl)
  end
  outcome = 'created'
end

local popped = tonumber(redis.call('HGET', k_state, 'popped') or '0')
local joined_at = tonumber(string.sub(entry, 1, string.find(entry, ':', 1, true) - 1))
local admitted_until = redis.call('ZSCORE', k_adm, user)
if admitted_until then
  local state = 'expired'
  if tonumber(admitted_until) > now then state = 'admitted' end
  return {outcome, state, joined_at, -1, tonumber(admitted_until), opened, popped}
end
local rank = -1
if opened == 1 then
  rank = redis.call('ZRANK', k_line, user) or -1
end
return {outcome, 'waiting', joined_at, rank, -1, opened, popped}
