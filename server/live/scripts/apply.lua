-- Apply a batch of a tenant's events to its live state, atomically.
--
-- KEYS[1]  the tenant's "ready" key (declares the tenant's hash slot)
-- ARGV[1]  the tenant key prefix, e.g. "wb:{acme}:"
-- ARGV[2]  JSON array of events, in the compact form built by server/live/state.py
-- ARGV[3]  TTL of day/interval/call keys, seconds
-- ARGV[4]  pub/sub channel announcing changes ("" on a Redis Cluster: the caller SPUBLISHes)
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
-- Rings, misses, holds and callbacks count once per event id (the "seen" hash);
-- a call's hold state follows its newest hold/unhold, and a callback stays
-- pending until its completion is known, whichever of the two came first.

local P = ARGV[1]
if ARGV[6] ~= "force" and redis.call("EXISTS", KEYS[1]) == 0 then
  return {-1, 0}
end
local events = cjson.decode(ARGV[2])
local ttl = tonumber(ARGV[3])
local applied, skipped = 0, 0

-- Counter increments and key lifetimes are gathered over the batch and written
-- once at the end: events of a batch mostly hit the same day and interval hashes.
local acc, touched, members = {}, {}, {queues = {}, agents = {}}

local function bump(key, field, by)
  local h = acc[key]
  if not h then h = {}; acc[key] = h end
  h[field] = (h[field] or 0) + by
end

local function keep(key, seconds) touched[key] = seconds end

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

-- The queue id is length-prefixed (bytes): queue "a:b" with call "c" and queue "a" with call "b:c"
-- are two legs (server/live/keys.py, Keys.call_leg, builds the same name).
local function leg(e) return P .. "call:" .. #e.q .. ":" .. e.q .. ":" .. e.c end

-- Agent records are read once per batch, changed in Lua, written once at the end.
local agents = {}
local function agent(a)
  local r = agents[a]
  if not r then
    local f = redis.call("HMGET", P .. "ag:" .. a, "since", "since_id", "call_ts", "call_id", "queue_id")
    r = {since = tonumber(f[1] or "-1"), since_id = f[2] or "", call_ts = tonumber(f[3] or "0"),
         call_id = f[4] or false, queue_id = f[5] or false, set = {}, del = {}}
    agents[a] = r
    members.agents[a] = true
  end
  return r
end
local function aset(r, field, value) r.set[field] = value; r.del[field] = nil end
local function adel(r, field) r.set[field] = nil; r.del[field] = true end
-- A call's hold state: "ts|flag|event id" (flag 1 on hold, 0 off), the newest ts winning (equal ts: the
-- greater event id), so the agent's "hold" field follows event time whatever the arrival order.
local function held(c)  -- the ts the call went on hold, or nil when it is not on hold
  local v = redis.call("GET", P .. "hold:" .. c)
  if not v then return nil end
  local ts, flag = string.match(v, "^(%d+)|(%d)")
  if flag == "1" then return ts end
  return nil
end
local function set_call(r, c, q, ts)
  r.call_id, r.queue_id, r.call_ts = c, q, ts
  aset(r, "call_id", c); aset(r, "queue_id", q); aset(r, "call_ts", ts)
  local since = held(c)
  if since then aset(r, "hold", since) else adel(r, "hold") end
end
local function clear_call(r)
  r.call_id, r.queue_id = false, false
  adel(r, "call_id"); adel(r, "queue_id"); adel(r, "hold")
end

local handlers = {}

handlers.q = function(e)  -- call.queued
  local k = leg(e)
  local f = redis.call("HMGET", k, "qts", "ats", "aday", "aiv", "bts", "bday", "biv")
  if f[1] then return false end
  redis.call("HSET", k, "qts", e.ts)
  keep(k, ttl)
  members.queues[e.q] = true
  count(e.d, e.i, e.q, "offered", 1)
  if f[2] then answered_wait(f[3], f[4], e.q, tonumber(f[2]) - e.ts, e.sl) end
  if f[5] then abandoned_wait(f[6], f[7], e.q, tonumber(f[5]) - e.ts, e.sl, e.sa) end
  if not f[2] and not f[5] then redis.call("ZADD", P .. "wait:" .. e.q, e.ts, e.c) end
  return true
end

handlers.a = function(e)  -- call.answered
  local k = leg(e)
  local f = redis.call("HMGET", k, "ats", "qts")
  if f[1] then return false end
  redis.call("HSET", k, "ats", e.ts, "aday", e.d, "aiv", e.i, "agent", e.a)
  if not f[2] then keep(k, ttl) end  -- a leg made by its queued event has its lifetime already
  members.queues[e.q] = true
  count(e.d, e.i, e.q, "answered", 1)
  if f[2] then
    redis.call("ZREM", P .. "wait:" .. e.q, e.c)
    answered_wait(e.d, e.i, e.q, e.ts - tonumber(f[2]), e.sl)
  end
  local r = agent(e.a)
  if e.ts >= r.call_ts then set_call(r, e.c, e.q, e.ts) end
  return true
end

handlers.b = function(e)  -- call.abandoned
  local k = leg(e)
  local f = redis.call("HMGET", k, "bts", "qts")
  if f[1] then return false end
  redis.call("HSET", k, "bts", e.ts, "bday", e.d, "biv", e.i)
  if not f[2] then keep(k, ttl) end
  members.queues[e.q] = true
  count(e.d, e.i, e.q, "abandoned", 1)
  if f[2] then
    redis.call("ZREM", P .. "wait:" .. e.q, e.c)
    abandoned_wait(e.d, e.i, e.q, e.ts - tonumber(f[2]), e.sl, e.sa)
  end
  return true
end

handlers.c = function(e)  -- call.completed
  local k = leg(e)
  local f = redis.call("HMGET", k, "cts", "qts", "ats")
  if f[1] then return false end
  redis.call("HSET", k, "cts", e.ts)
  if not f[2] and not f[3] then keep(k, ttl) end
  members.queues[e.q] = true
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
  if e.rv then
    count(e.d, e.i, e.q, "revenue_cents", e.rv); bump(ad, "revenue_cents", e.rv)
    if e.rv >= 1 then count(e.d, e.i, e.q, "converted", 1); bump(ad, "converted", 1) end
  end
  local r = agent(e.a)
  if r.call_id == e.c and r.queue_id == e.q then clear_call(r) end
  return true
end

handlers.s = function(e)  -- agent.state
  local tr = P .. "agt:" .. e.a
  local added = redis.call("ZADD", tr, e.ts, e.ts .. "|" .. e.st .. "|" .. (e.rn or ""))
  -- Keep two days of changes, and always the newest change before that (trimmed now and then).
  if added == 1 and redis.call("ZCARD", tr) > 128 then
    local old = redis.call("ZRANGEBYSCORE", tr, "-inf", "(" .. (e.ts - 2 * 86400000))
    if #old > 1 then redis.call("ZREMRANGEBYRANK", tr, 0, #old - 2) end
  end
  keep(tr, ttl * 3)
  local r = agent(e.a)
  -- Newest ts wins; equal ts are ordered by event id, so arrival order never matters.
  if e.ts > r.since or (e.ts == r.since and e.id > r.since_id) then
    r.since, r.since_id = e.ts, e.id
    aset(r, "state", e.st); aset(r, "since", e.ts); aset(r, "since_id", e.id)
    if e.rn then aset(r, "reason", e.rn) else adel(r, "reason") end
    if e.nm then aset(r, "name", e.nm) end
    if e.tm then aset(r, "team", e.tm) end
    if e.qs then aset(r, "queues", e.qs) end
    if e.c and e.q then
      set_call(r, e.c, e.q, e.ts)
    elseif e.st ~= "on_call" and e.st ~= "wrap_up" then
      clear_call(r)
    end
  else
    -- An older change fills in what the record lacks and never overwrites.
    local ag = P .. "ag:" .. e.a
    if e.nm and not r.set.name then redis.call("HSETNX", ag, "name", e.nm) end
    if e.tm and not r.set.team then redis.call("HSETNX", ag, "team", e.tm) end
    if e.qs and not r.set.queues then redis.call("HSETNX", ag, "queues", e.qs) end
  end
  return added == 1
end

local function once(e)  -- CSAT, quality and activity events have no natural key: remember their event ids
  local seen = P .. "seen:" .. e.d
  local fresh = redis.call("HSETNX", seen, e.id, 1) == 1
  keep(seen, ttl)
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

-- Rings, misses, holds and callbacks count once per event id, for the queue and the agent they name.
local function activity(e, field, by)
  if e.q then count(e.d, e.i, e.q, field, by); members.queues[e.q] = true end
  if e.a then bump(P .. "ad:" .. e.d .. ":" .. e.a, field, by); members.agents[e.a] = true end
end

handlers.o = function(e)  -- call.offered
  if not once(e) then return false end
  activity(e, "rings", 1)
  return true
end

handlers.m = function(e)  -- call.missed
  if not once(e) then return false end
  activity(e, "missed", 1)
  activity(e, "missed_ring_ms", e.rg)
  return true
end

local function hold(e, flag)  -- the call's hold state, newest ts first; the agent's flag when it is their call
  local k = P .. "hold:" .. e.c
  local v = redis.call("GET", k)
  local ts, id = -1, ""
  if v then ts, id = string.match(v, "^(%d+)|%d|(.*)$"); ts = tonumber(ts) end
  if e.ts > ts or (e.ts == ts and e.id > id) then
    redis.call("SET", k, e.ts .. "|" .. flag .. "|" .. e.id)
    keep(k, ttl)
    local r = agent(e.a)
    if r.call_id == e.c then
      if flag == 1 then aset(r, "hold", e.ts) else adel(r, "hold") end
    end
  end
end

handlers.h = function(e)  -- call.hold
  hold(e, 1)
  if not once(e) then return false end
  activity(e, "holds", 1)
  return true
end

handlers.u = function(e)  -- call.unhold
  hold(e, 0)
  return once(e)
end

-- A callback: "cbl:{id}" remembers that it was requested / completed (whichever came first), and the
-- pending ones sit in the hash "cb" (callback_id → JSON) until their completion arrives.
handlers.k = function(e)  -- callback.requested
  local k = P .. "cbl:" .. e.cb
  redis.call("HSET", k, "req", 1)
  keep(k, ttl)
  if redis.call("HEXISTS", k, "done") == 0 then
    redis.call("HSET", P .. "cb", e.cb, cjson.encode({callback_id = e.cb, queue_id = e.q, requested_at = e.ra,
                                                       due_ts = e.du or cjson.null}))
    keep(P .. "cb", ttl)
  end
  if not once(e) then return false end
  activity(e, "callbacks_requested", 1)
  return true
end

handlers.x = function(e)  -- callback.completed
  local k = P .. "cbl:" .. e.cb
  redis.call("HSET", k, "done", 1)
  keep(k, ttl)
  redis.call("HDEL", P .. "cb", e.cb)
  if not once(e) then return false end
  activity(e, "callbacks_completed", 1)
  if e.oc == "reached" then activity(e, "callbacks_reached", 1) end
  return true
end

for _, e in ipairs(events) do
  if handlers[e.k](e) then applied = applied + 1 else skipped = skipped + 1 end
end
for key, fields in pairs(acc) do
  for field, by in pairs(fields) do redis.call("HINCRBY", key, field, by) end
  touched[key] = ttl
end
for a, r in pairs(agents) do
  local key = P .. "ag:" .. a
  local set, del = {}, {}
  for field, value in pairs(r.set) do set[#set + 1] = field; set[#set + 1] = value end
  for field in pairs(r.del) do del[#del + 1] = field end
  if #set > 0 then redis.call("HSET", key, unpack(set)) end
  if #del > 0 then redis.call("HDEL", key, unpack(del)) end
  touched[key] = ttl * 3
end
for key, seconds in pairs(touched) do redis.call("EXPIRE", key, seconds) end
for set, ids in pairs(members) do
  local list = {}
  for id in pairs(ids) do list[#list + 1] = id end
  if #list > 0 then redis.call("SADD", P .. set, unpack(list)) end
end
if applied > 0 and ARGV[4] ~= "" then
  redis.call("PUBLISH", ARGV[4], ARGV[5])
end
return {applied, skipped}
