-- Shared prelude, prepended (by the Rust side, at build time) to the scripts that need it.
-- It defines helpers only and touches no key by itself.
--
-- Data of one showtime (every key carries the hash tag {st:<id>}):
--   holds   hash  seat_id -> "<hold_id>:<expires_at_ms>"   the live owner of each held seat
--   expiry  zset  hold_id by expires_at_ms                  what expires when
--   info    hash  hold_id -> JSON {u=user, e=expires_at_ms, c=cap_ms, st=state, s=[seat ids]}
--                 state: "held" (client's), "checkout" (extended once for payment),
--                 "claimed" (a payment worker is finalising it)
--   users   hash  user_id -> number of seats the user holds
--   sold    set   sold seat ids, plus the marker "_" once rebuilt from PostgreSQL
--   meta    hash  {starts_at = ms, status = "scheduled"|"cancelled"}, cached from PostgreSQL
--   layout  hash  the seat layout in the form best.lua scans (see its header)

-- Redis' clock in milliseconds: every expiry decision uses it, never the caller's clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function fmt(n)
  return string.format('%.0f', n)
end

-- "<hold_id>:<expires_at_ms>" -> hold_id, expires_at_ms
local function parse_owner(v)
  local sep = string.find(v, ':', 1, true)
  return string.sub(v, 1, sep - 1), tonumber(string.sub(v, sep + 1))
end

-- SEAT_PUBLISH is 'PUBLISH' on one Redis and 'SPUBLISH' on a Redis Cluster (sharded pub/sub:
-- the channel carries the showtime's hash tag, so it stays on the script's shard); the Rust side
-- (holds::store::Lua) puts its definition on the first line of each script. queue_admit.lua
-- publishes the waiting room's events with it too.
local function publish(channel, kind, seats, hold_id, now)
  if #seats > 0 then
    redis.call(SEAT_PUBLISH, channel, cjson.encode({type = kind, seat_ids = seats, hold_id = hold_id, at = now}))
  end
end

-- Drops one hold: its seats (only those it still owns), its expiry, its info, its user count.
-- Returns the seats it freed.
local function drop_hold(k_holds, k_expiry, k_info, k_users, hold_id, info)
  local freed = {}
  for _, seat in ipairs(info.s) do
    local cur = redis.call('HGET', k_holds, seat)
    if cur then
      local owner = parse_owner(cur)
      if owner == hold_id then
        redis.call('HDEL', k_holds, seat)
        freed[#freed + 1] = seat
      end
    end
  end
  if redis.call('HINCRBY', k_users, info.u, -#info.s) <= 0 then
    redis.call('HDEL', k_users, info.u)
  end
  redis.call('HDEL', k_info, hold_id)
  redis.call('ZREM', k_expiry, hold_id)
  return freed
end

-- Drops up to `limit` holds whose expiry is at or before `now`. Returns freed seats, count.
local function purge_expired(k_holds, k_expiry, k_info, k_users, now, limit)
  local expired = redis.call('ZRANGEBYSCORE', k_expiry, '-inf', now, 'LIMIT', 0, limit)
  local freed = {}
  for _, hold_id in ipairs(expired) do
    local raw = redis.call('HGET', k_info, hold_id)
    if raw then
      for _, seat in ipairs(drop_hold(k_holds, k_expiry, k_info, k_users, hold_id, cjson.decode(raw))) do
        freed[#freed + 1] = seat
      end
    else
      redis.call('ZREM', k_expiry, hold_id)
    end
  end
  return freed, #expired
end
