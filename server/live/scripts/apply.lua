-- Apply a batch of a tenant's events to its live state, atomically.
--
-- KEYS[1]  the tenant's "ready" key (declares the tenant's hash slot)
-- ARGV[1]  the tenant key prefix, e.g. "wb:{acme}:"
-- ARGV[2]  JSON array of events, in the compact form built by server/live/state.py
-- ARGV[3]  TTL of day/interval/call keys, seconds
-- ARGV[4]  pub/sub channel announcing changes
-- ARGV[5]  tenant id (the message published)
-- ARGV[6]  "force": apply even when the state is not ready (used by the rebuild)
--
-- Returns {applied, skipped} or {-1, 0} when the tenant's state is missing
-- (the caller rebuilds it from PostgreSQL, which holds every event).
--
-- Idempotent and order-free: every counter moves only when a fact about a
-- queue leg becomes known for the first time (queued, answered, abandoned,
-- completed), and wait-dependent counters move when both ends of the wait
-- are known, whichever came first. Replaying any subset of events again, in
-- any order, leaves the state unchanged. Agent state follows the newest ts.

local P = ARGV[1]
if ARGV[6] ~= "force" and redis.call("EXISTS", KEYS[1]) == 0 then
  return {-1, 0}
end
local events = cjson.decode(ARGV[2])
local ttl = tonumber(ARGV[3])
local applied, skipped = 0, 0

local function bump(key, field, by)
  redis.call("HINCRBY", key, field, by)
  redis.call("EXPIRE", key, ttl)
end

-- Count one field on the queue's day and interval hashes.
local function count(day, iv, q, field, by)
  bump(P .. "qd:" .. day .. ":" .. q, field, by)
  bump(P .. "qi:" .. iv .. ":" .. q, field, by)
end

-- Wait of an answered leg, once both queued and answered ts are known.
local function answered_wait(day, iv, q, wait, sl)
  if wait < 0 then wait = 0 end
  count(day, iv, q, "wait_answered_ms", wait)
  if wait <= sl then count(day, iv, q, "answered_within_sl", 1) end
end

local function abandoned_wait(day, iv, q, wait, sl, sa)
  if wait < 0 then wait = 0 end
  count(day, iv, q, "wait_abandoned_ms", wait)
  if wait <= sl then count(day, iv, q, "abandoned_within_sl", 1) end
  if wait < sa then count(day, iv, q, "short_abandoned", 1) end
end

local function leg(e) return P .. "call:" .. e.q .. ":" .. e.c end

local handlers = {}

handlers.q = function(e)  -- call.queued
  local k = leg(e)
  if redis.call("HSETNX", k, "qts", e.ts) == 0 then return false end
  redis.call("EXPIRE", k, ttl)
  redis.call("SADD", P .. "queues", e.q)
  count(e.d, e.i, e.q, "offered", 1)
  local f = redis.call("HMGET", k, "ats", "aday", "aiv", "bts", "bday", "biv")
  if f[1] then
    answered_wait(f[2], f[3], e.q, tonumber(f[1]) - e.ts, e.sl)
  end
  if f[4] then
    abandoned_wait(f[5], f[6], e.q, tonumber(f[4]) - e.ts, e.sl, e.sa)
  end
  if not f[1] and not f[4] then
    redis.call("ZADD", P .. "wait:" .. e.q, e.ts, e.c)
  end
  return true
end

handlers.a = function(e)  -- call.answered
  local k = leg(e)
  if redis.call("HSETNX", k, "ats", e.ts) == 0 then return false end
  redis.call("HSET", k, "aday", e.d, "aiv", e.i, "agent", e.a)
  redis.call("EXPIRE", k, ttl)
  redis.call("SADD", P .. "queues", e.q)
  count(e.d, e.i, e.q, "answered", 1)
  redis.call("ZREM", P .. "wait:" .. e.q, e.c)
  local qts = redis.call("HGET", k, "qts")
  if qts then answered_wait(e.d, e.i, e.q, e.ts - tonumber(qts), e.sl) end
  local ag = P .. "ag:" .. e.a
  local call_ts = tonumber(redis.call("HGET", ag, "call_ts") or "0")
  if e.ts >= call_ts then
    redis.call("HSET", ag, "call_id", e.c, "queue_id", e.q, "call_ts", e.ts)
  end
  redis.call("SADD", P .. "agents", e.a)
  return true
end

handlers.b = function(e)  -- call.abandoned
  local k = leg(e)
  if redis.call("HSETNX", k, "bts", e.ts) == 0 then return false end
  redis.call("HSET", k, "bday", e.d, "biv", e.i)
  redis.call("EXPIRE", k, ttl)
  redis.call("SADD", P .. "queues", e.q)
  count(e.d, e.i, e.q, "abandoned", 1)
  redis.call("ZREM", P .. "wait:" .. e.q, e.c)
  local qts = redis.call("HGET", k, "qts")
  if qts then abandoned_wait(e.d, e.i, e.q, e.ts - tonumber(qts), e.sl, e.sa) end
  return true
end

handlers.c = function(e)  -- call.completed
  local k = leg(e)
  if redis.call("HSETNX", k, "cts", e.ts) == 0 then return false end
  redis.call("EXPIRE", k, ttl)
  redis.call("SADD", P .. "queues", e.q)
  count(e.d, e.i, e.q, "handled", 1)
  count(e.d, e.i, e.q, "handle_ms", e.h)
  count(e.d, e.i, e.q, "talk_ms", e.tk)
  count(e.d, e.i, e.q, "hold_ms", e.hd)
  count(e.d, e.i, e.q, "wrap_ms", e.wr)
  if e.rs then
    count(e.d, e.i, e.q, "resolved_given", 1)
    count(e.d, e.i, e.q, "resolved", e.rs)
  end
  if e.tr == 1 then count(e.d, e.i, e.q, "transferred", 1) end
  local ad = P .. "ad:" .. e.d .. ":" .. e.a
  bump(ad, "handled", 1)
  bump(ad, "handle_ms", e.h)
  local ag = P .. "ag:" .. e.a
  if redis.call("HGET", ag, "call_id") == e.c and redis.call("HGET", ag, "queue_id") == e.q then
    redis.call("HDEL", ag, "call_id", "queue_id")
  end
  redis.call("SADD", P .. "agents", e.a)
  return true
end

handlers.s = function(e)  -- agent.state
  local ag = P .. "ag:" .. e.a
  local tr = P .. "agt:" .. e.a
  local member = e.ts .. "|" .. e.st .. "|" .. (e.rn or "")
  local added = redis.call("ZADD", tr, e.ts, member)
  -- Keep two days of changes, and always the newest change before that.
  local cutoff = e.ts - 2 * 86400000
  local old = redis.call("ZRANGEBYSCORE", tr, "-inf", "(" .. cutoff)
  if #old > 1 then redis.call("ZREMRANGEBYRANK", tr, 0, #old - 2) end
  redis.call("EXPIRE", tr, ttl * 3)
  redis.call("SADD", P .. "agents", e.a)
  local cur = redis.call("HMGET", ag, "since", "since_id")
  local since = tonumber(cur[1] or "-1")
  -- Newest ts wins; equal ts are ordered by event id, so arrival order never matters.
  if e.ts > since or (e.ts == since and e.id > (cur[2] or "")) then
    redis.call("HSET", ag, "state", e.st, "since", e.ts, "since_id", e.id)
    if e.rn then redis.call("HSET", ag, "reason", e.rn) else redis.call("HDEL", ag, "reason") end
    if e.nm then redis.call("HSET", ag, "name", e.nm) end
    if e.tm then redis.call("HSET", ag, "team", e.tm) end
    if e.qs then redis.call("HSET", ag, "queues", e.qs) end
    if e.c and e.q then
      redis.call("HSET", ag, "call_id", e.c, "queue_id", e.q, "call_ts", e.ts)
    elseif e.st ~= "on_call" and e.st ~= "wrap_up" then
      redis.call("HDEL", ag, "call_id", "queue_id")
    end
  else
    -- An older change: it fills in what the agent record lacks, never overwrites.
    if e.nm then redis.call("HSETNX", ag, "name", e.nm) end
    if e.tm then redis.call("HSETNX", ag, "team", e.tm) end
    if e.qs then redis.call("HSETNX", ag, "queues", e.qs) end
  end
  redis.call("EXPIRE", ag, ttl * 3)
  return added == 1
end

local function once(e)  -- CSAT and quality have no natural key: remember their event ids
  local seen = P .. "seen:" .. e.d
  local fresh = redis.call("HSETNX", seen, e.id, 1) == 1
  redis.call("EXPIRE", seen, ttl)
  return fresh
end

handlers.y = function(e)  -- csat.response
  if not once(e) then return false end
  local keys = {P .. "td:" .. e.d}
  if e.a then keys[#keys + 1] = P .. "ad:" .. e.d .. ":" .. e.a end
  for _, key in ipairs(keys) do
    if e.cs then
      bump(key, "csat_n", 1)
      bump(key, "csat_sum", e.cs)
      if e.cs >= 4 then bump(key, "csat_satisfied", 1) end
    end
    if e.np then
      bump(key, "nps_n", 1)
      if e.np >= 9 then bump(key, "nps_promoters", 1) end
      if e.np <= 6 then bump(key, "nps_detractors", 1) end
    end
  end
  return true
end

handlers.r = function(e)  -- quality.scored (score in thousandths)
  if not once(e) then return false end
  for _, key in ipairs({P .. "td:" .. e.d, P .. "ad:" .. e.d .. ":" .. e.a}) do
    bump(key, "quality_n", 1)
    bump(key, "quality_milli", e.sc)
  end
  return true
end

for _, e in ipairs(events) do
  if handlers[e.k](e) then applied = applied + 1 else skipped = skipped + 1 end
end
if applied > 0 then
  redis.call("PUBLISH", ARGV[4], ARGV[5])
end
return {applied, skipped}
