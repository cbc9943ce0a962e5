-- Apply a batch of a tenant's events to its live state, atomically.
--
-- KEYS     every key the batch touches, each once (server/live/shortform.py, Declared): KEYS[1] the
--          tenant's "ready" key, KEYS[2] its queues set, KEYS[3] its agents set, KEYS[4] the pending
--          callbacks hash, KEYS[5] the pending callbacks per queue; then the keys of the events, each
--          event naming its own by index (e.l its call leg, e.qd / e.qi its queue's day and interval
--          hashes, e.ag its agent record …). No key name is built here.
-- ARGV[1]  JSON array of events, in the compact form built by server/live/shortform.py
-- ARGV[2]  TTL of day/interval/call keys, seconds
-- ARGV[3]  pub/sub channel announcing changes ("" on a Redis Cluster: the caller SPUBLISHes)
-- ARGV[4]  tenant id (the message published)
-- ARGV[5]  "force": apply even when the state is not ready (used by the rebuild)
-- ARGV[6]  JSON {qd = {"day|queue": index}, qi = {"interval|queue": index}, ad = {"day|agent": index}}: the
--          declared queue hashes and agent days
-- ARGV[7]  TTL of the pending callbacks' records and counts (CB, CBN), seconds
--
-- Returns {applied, skipped}, {-1, 0} when the tenant's state is missing (the caller rebuilds it
-- from PostgreSQL, which holds every event), or {-2, 0, day, interval, queue, agent, …} without changing
-- anything when a queued event must count a wait into an answer's or abandon's day and interval
-- hashes, or a late hold or unhold must correct a completion's hold time in its day and interval hashes
-- and its agent's day (read from the stored leg), that were not declared: the caller declares them
-- (agent "" for none) and repeats.
--
-- Idempotent and order-free: every counter moves only when a fact about a
-- queue leg becomes known for the first time (queued, answered, abandoned,
-- completed), and wait-dependent counters move when both ends of the wait
-- are known, whichever came first. Replaying any subset of events again, in
-- any order, leaves the state unchanged. Agent state follows the newest ts.
-- Rings, misses, holds and callbacks count once per event id (the "seen" hash);
-- a call's hold state follows its newest hold/unhold; a completed leg's hold time is the sum of
-- its hold spans (hold/unhold naming its queue, by the agent who completed it) when there is a hold,
-- recounted when one comes in late; and a callback stays
-- pending until its completion is known, whichever of the two came first.

if ARGV[5] ~= "force" and redis.call("EXISTS", KEYS[1]) == 0 then
  return {-1, 0}
end
local events = cjson.decode(ARGV[1])
local ttl = tonumber(ARGV[2])
local cb_ttl = tonumber(ARGV[7])  -- the pending callbacks' records and counts: longer, see state.py CALLBACK_DAYS
local maps = cjson.decode(ARGV[6])
local QD, QI, AD = maps.qd, maps.qi, maps.ad
local QUEUES, AGENTS, CB, CBN = KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local applied, skipped = 0, 0

-- A queued event whose leg was answered or abandoned before this batch counts the wait into that
-- end's day and interval: check, before any write, that those hashes were declared. What was read
-- is kept for the handler while no event of the batch changed the leg.
local before, dirty, wanted = {}, {}, {}
local function want(day, interval, queue, agent)
  wanted[#wanted + 1] = day; wanted[#wanted + 1] = interval; wanted[#wanted + 1] = queue
  wanted[#wanted + 1] = agent
end
-- A completed leg's "cx": "day|interval|counted hold ms|reported hold ms|agent" of its completion.
local function completion(cx)
  local day, iv, counted, reported, agent = string.match(cx, "^([^|]*)|([^|]*)|(-?%d+)|(-?%d+)|(.*)$")
  return day, iv, tonumber(counted), tonumber(reported), agent
end
local checked = {}
for _, e in ipairs(events) do
  if e.l and (e.k == "h" or e.k == "u") and not checked[e.l] then
    checked[e.l] = true
    local cx = redis.call("HGET", KEYS[e.l], "cx")
    if cx then
      local day, iv, _, _, agent = completion(cx)
      if not (QD[day .. "|" .. e.q] and QI[iv .. "|" .. e.q] and AD[day .. "|" .. agent]) then
        want(day, iv, e.q, agent)
      end
    end
  end
  if e.k == "q" and not before[e.l] then
    local f = redis.call("HMGET", KEYS[e.l], "qts", "ats", "aday", "aiv", "bts", "bday", "biv")
    before[e.l] = f
    if not f[1] then
      for _, at in ipairs({3, 6}) do
        if f[at] and not (QD[f[at] .. "|" .. e.q] and QI[f[at + 1] .. "|" .. e.q]) then
          want(f[at], f[at + 1], e.q, "")
        end
      end
    end
  end
end
if #wanted > 0 then
  local out = {-2, 0}
  for _, v in ipairs(wanted) do out[#out + 1] = v end
  return out
end

-- Counter increments and key lifetimes are gathered over the batch and written
-- once at the end: events of a batch mostly hit the same day and interval hashes.
local acc, touched, members = {}, {}, {[QUEUES] = {}, [AGENTS] = {}}

local function bump(key, field, by)
  local h = acc[key]
  if not h then h = {}; acc[key] = h end
  h[field] = (h[field] or 0) + by
end

local function keep(key, seconds) touched[key] = seconds end

-- Count one field on the queue's day and interval hashes (KEYS indexes qd, qi).
local function count(qd, qi, field, by)
  bump(KEYS[qd], field, by)
  bump(KEYS[qi], field, by)
end

-- Wait of an answered leg, once both queued and answered ts are known.
local function answered_wait(qd, qi, wait, sl)
  if wait < 0 then wait = 0 end
  count(qd, qi, "wait_answered_ms", wait)
  if wait <= sl then count(qd, qi, "answered_within_sl", 1) end
end

local function abandoned_wait(qd, qi, wait, sl, sa)
  if wait < 0 then wait = 0 end
  count(qd, qi, "wait_abandoned_ms", wait)
  if wait <= sl then count(qd, qi, "abandoned_within_sl", 1) end
  if wait < sa then count(qd, qi, "short_abandoned", 1) end
end

-- The leg's stored fields (the check above read a queued event's; an event of the batch that
-- wrote the leg since makes them stale).
local function leg_fields(e, ...)
  local f = e.k == "q" and not dirty[e.l] and before[e.l]
  dirty[e.l] = true
  if f then return f end
  return redis.call("HMGET", KEYS[e.l], ...)
end

-- Agent records are read once per batch, changed in Lua, written once at the end.
local agents = {}
local function agent(e)
  local r = agents[e.a]
  if not r then
    local f = redis.call("HMGET", KEYS[e.ag], "since", "since_id", "call_ts", "call_id", "queue_id")
    r = {key = KEYS[e.ag], since = tonumber(f[1] or "-1"), since_id = f[2] or "", call_ts = tonumber(f[3] or "0"),
         call_id = f[4] or false, queue_id = f[5] or false, set = {}, del = {}}
    agents[e.a] = r
    members[AGENTS][e.a] = true
  end
  return r
end
local function aset(r, field, value) r.set[field] = value; r.del[field] = nil end
local function adel(r, field) r.set[field] = nil; r.del[field] = true end
-- A call's hold state: "ts|flag|event id" (flag 1 on hold, 0 off), the newest ts winning (equal ts: the
-- greater event id), so the agent's "hold" field follows event time whatever the arrival order.
local function held(ho)  -- the ts the call went on hold, or nil when it is not on hold (KEYS[ho]: its hold state)
  local v = redis.call("GET", KEYS[ho])
  if not v then return nil end
  local ts, flag = string.match(v, "^(%d+)|(%d)")
  if flag == "1" then return ts end
  return nil
end
local function set_call(r, e)
  local c, q, ts = e.c, e.q, e.ts
  r.call_id, r.queue_id, r.call_ts = c, q, ts
  aset(r, "call_id", c); aset(r, "queue_id", q); aset(r, "call_ts", ts)
  local since = held(e.ho)
  if since then aset(r, "hold", since) else adel(r, "hold") end
end
local function clear_call(r)
  r.call_id, r.queue_id = false, false
  adel(r, "call_id"); adel(r, "queue_id"); adel(r, "hold")
end

local handlers = {}

handlers.q = function(e)  -- call.queued
  local k = KEYS[e.l]
  local f = leg_fields(e, "qts", "ats", "aday", "aiv", "bts", "bday", "biv")
  if f[1] then return false end
  redis.call("HSET", k, "qts", e.ts)
  keep(k, ttl)
  members[QUEUES][e.q] = true
  count(e.qd, e.qi, "offered", 1)
  if f[2] then answered_wait(QD[f[3] .. "|" .. e.q], QI[f[4] .. "|" .. e.q], tonumber(f[2]) - e.ts, e.sl) end
  if f[5] then abandoned_wait(QD[f[6] .. "|" .. e.q], QI[f[7] .. "|" .. e.q], tonumber(f[5]) - e.ts, e.sl, e.sa) end
  if not f[2] and not f[5] then redis.call("ZADD", KEYS[e.w], e.ts, e.c) end
  return true
end

handlers.a = function(e)  -- call.answered
  local k = KEYS[e.l]
  local f = leg_fields(e, "ats", "qts")
  if f[1] then return false end
  redis.call("HSET", k, "ats", e.ts, "aday", e.d, "aiv", e.i, "agent", e.a)
  if not f[2] then keep(k, ttl) end  -- a leg made by its queued event has its lifetime already
  members[QUEUES][e.q] = true
  count(e.qd, e.qi, "answered", 1)
  if f[2] then
    redis.call("ZREM", KEYS[e.w], e.c)
    answered_wait(e.qd, e.qi, e.ts - tonumber(f[2]), e.sl)
  end
  local r = agent(e)
  if e.ts >= r.call_ts then set_call(r, e) end
  return true
end

handlers.b = function(e)  -- call.abandoned
  local k = KEYS[e.l]
  local f = leg_fields(e, "bts", "qts")
  if f[1] then return false end
  redis.call("HSET", k, "bts", e.ts, "bday", e.d, "biv", e.i)
  if not f[2] then keep(k, ttl) end
  members[QUEUES][e.q] = true
  count(e.qd, e.qi, "abandoned", 1)
  if f[2] then
    redis.call("ZREM", KEYS[e.w], e.c)
    abandoned_wait(e.qd, e.qi, e.ts - tonumber(f[2]), e.sl, e.sa)
  end
  return true
end

-- A leg keeps at most HOLD_MARKS hold/unhold marks: past them it is "over" ("ho"), its marks are dropped
-- and its hold time is the completion's hold_s (sql/016_hold_marks_cap.sql: the same rule), so a flood of
-- holds on one call costs Redis no more than that many per event.
local HOLD_MARKS = 64

-- The sum of an agent's hold spans in a leg's marks ("hm": JSON [[ts, 1 hold | 0 unhold, agent, event id], …])
-- up to the completion's ts, nil when that agent has no hold mark (sql/015_hold_spans.sql: the same rule).
local function hold_spans(all, agent, done)
  local marks, any = {}, false
  for _, m in ipairs(all) do
    if m[3] == agent then
      if m[2] == 1 then any = true end
      if m[1] <= done then marks[#marks + 1] = m end
    end
  end
  if not any then return nil end
  table.sort(marks, function(x, y) if x[1] ~= y[1] then return x[1] < y[1] end return x[4] < y[4] end)
  local total, since = 0, nil
  for _, m in ipairs(marks) do
    if m[2] == 1 then
      if not since then since = m[1] end
    elseif since then
      total = total + m[1] - since; since = nil
    end
  end
  if since then total = total + done - since end
  return total
end

handlers.c = function(e)  -- call.completed
  local k = KEYS[e.l]
  local f = leg_fields(e, "cts", "qts", "ats", "hm", "ho")
  if f[1] then return false end
  local hd = not f[5] and f[4] and hold_spans(cjson.decode(f[4]), e.a, e.ts) or e.hd  -- no marks: two fields checked
  local h = e.h - e.hd + hd
  redis.call("HSET", k, "cts", e.ts, "cx", e.d .. "|" .. e.i .. "|" .. hd .. "|" .. e.hd .. "|" .. e.a)
  if not f[2] and not f[3] and not f[4] and not f[5] then keep(k, ttl) end
  members[QUEUES][e.q] = true
  count(e.qd, e.qi, "handled", 1)
  count(e.qd, e.qi, "handle_ms", h)
  count(e.qd, e.qi, "talk_ms", e.tk)
  count(e.qd, e.qi, "hold_ms", hd)
  count(e.qd, e.qi, "wrap_ms", e.wr)
  if e.rs then
    count(e.qd, e.qi, "resolved_given", 1)
    count(e.qd, e.qi, "resolved", e.rs)
  end
  if e.tr == 1 then count(e.qd, e.qi, "transferred", 1) end
  local ad = KEYS[e.ad]
  bump(ad, "handled", 1)
  bump(ad, "handle_ms", h)
  if e.rv then
    count(e.qd, e.qi, "revenue_cents", e.rv); bump(ad, "revenue_cents", e.rv)
    if e.rv >= 1 then count(e.qd, e.qi, "converted", 1); bump(ad, "converted", 1) end
  end
  local r = agent(e)
  if r.call_id == e.c and r.queue_id == e.q then clear_call(r) end
  return true
end

handlers.s = function(e)  -- agent.state
  local tr = KEYS[e.at]
  local added = redis.call("ZADD", tr, e.ts, e.ts .. "|" .. e.st .. "|" .. (e.rn or ""))
  -- Keep two days of changes, and always the newest change before that (trimmed now and then).
  if added == 1 and redis.call("ZCARD", tr) > 128 then
    local old = redis.call("ZRANGEBYSCORE", tr, "-inf", "(" .. (e.ts - 2 * 86400000))
    if #old > 1 then redis.call("ZREMRANGEBYRANK", tr, 0, #old - 2) end
  end
  keep(tr, ttl * 3)
  local r = agent(e)
  -- Newest ts wins; equal ts are ordered by event id, so arrival order never matters.
  if e.ts > r.since or (e.ts == r.since and e.id > r.since_id) then
    r.since, r.since_id = e.ts, e.id
    aset(r, "state", e.st); aset(r, "since", e.ts); aset(r, "since_id", e.id)
    if e.rn then aset(r, "reason", e.rn) else adel(r, "reason") end
    if e.nm then aset(r, "name", e.nm) end
    if e.tm then aset(r, "team", e.tm) end
    if e.qs then aset(r, "queues", e.qs) end
    if e.c and e.q then
      set_call(r, e)
    elseif e.st ~= "on_call" and e.st ~= "wrap_up" then
      clear_call(r)
    end
  else
    -- An older change fills in what the record lacks and never overwrites.
    if e.nm and not r.set.name then redis.call("HSETNX", r.key, "name", e.nm) end
    if e.tm and not r.set.team then redis.call("HSETNX", r.key, "team", e.tm) end
    if e.qs and not r.set.queues then redis.call("HSETNX", r.key, "queues", e.qs) end
  end
  return added == 1
end

local function once(e)  -- CSAT, quality and activity events have no natural key: remember their event ids
  local seen = KEYS[e.sn]
  local fresh = redis.call("HSETNX", seen, e.id, 1) == 1
  keep(seen, ttl)
  return fresh
end

handlers.y = function(e)  -- csat.response
  if not once(e) then return false end
  local keys = {KEYS[e.td]}
  if e.a then keys[#keys + 1] = KEYS[e.ad] end
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
  for _, key in ipairs({KEYS[e.td], KEYS[e.ad]}) do
    bump(key, "quality_n", 1)
    bump(key, "quality_milli", e.sc)
  end
  return true
end

-- Rings, misses, holds and callbacks count once per event id, for the queue and the agent they name.
local function activity(e, field, by)
  if e.q then count(e.qd, e.qi, field, by); members[QUEUES][e.q] = true end
  if e.a then bump(KEYS[e.ad], field, by); members[AGENTS][e.a] = true end
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
  local k = KEYS[e.ho]
  local v = redis.call("GET", k)
  local ts, id = -1, ""
  if v then ts, id = string.match(v, "^(%d+)|%d|(.*)$"); ts = tonumber(ts) end
  if e.ts > ts or (e.ts == ts and e.id > id) then
    redis.call("SET", k, e.ts .. "|" .. flag .. "|" .. e.id)
    keep(k, ttl)
    local r = agent(e)
    if r.call_id == e.c then
      if flag == 1 then aset(r, "hold", e.ts) else adel(r, "hold") end
    end
  end
end

-- A hold or unhold naming a queue is a mark of that leg's hold spans; when the leg was completed before,
-- its hold time is recounted and the change goes to the completion's day, interval and agent day.
local function mark(e, flag)
  local k = KEYS[e.l]
  local f = redis.call("HMGET", k, "hm", "cx", "cts", "ho")
  if f[4] then return end  -- over HOLD_MARKS: its hold time is the reported one already
  local marks = f[1] and cjson.decode(f[1]) or {}
  marks[#marks + 1] = {e.ts, flag, e.a, e.id}
  local over = #marks > HOLD_MARKS
  if over then
    redis.call("HSET", k, "ho", 1); redis.call("HDEL", k, "hm")
  else
    redis.call("HSET", k, "hm", cjson.encode(marks))
  end
  keep(k, ttl)
  if not f[2] then return end
  local day, iv, counted, reported, agent = completion(f[2])
  if agent ~= e.a and not over then return end
  local hd = not over and hold_spans(marks, agent, tonumber(f[3])) or reported
  if hd == counted then return end
  local qd, qi, ad = QD[day .. "|" .. e.q], QI[iv .. "|" .. e.q], AD[day .. "|" .. agent]
  count(qd, qi, "hold_ms", hd - counted)
  count(qd, qi, "handle_ms", hd - counted)
  bump(KEYS[ad], "handle_ms", hd - counted)
  redis.call("HSET", k, "cx", day .. "|" .. iv .. "|" .. hd .. "|" .. reported .. "|" .. agent)
end

handlers.h = function(e)  -- call.hold
  hold(e, 1)
  if not once(e) then return false end
  if e.l then mark(e, 1) end
  activity(e, "holds", 1)
  return true
end

handlers.u = function(e)  -- call.unhold
  hold(e, 0)
  if not once(e) then return false end
  if e.l then mark(e, 0) end
  return true
end

-- A callback: its record (KEYS[e.cl]) remembers that it was requested / completed (whichever came
-- first); the pending ones sit in the hash CB (callback_id → JSON) until their completion arrives, and
-- CBN counts them per queue. The count moves only when a record is added to CB or removed from it,
-- so it equals the records whatever the order, the duplicates and the replays (a callback requested
-- again keeps its first record).
handlers.k = function(e)  -- callback.requested
  local k = KEYS[e.cl]
  redis.call("HSET", k, "req", 1)
  keep(k, ttl)
  if redis.call("HEXISTS", k, "done") == 0 then
    local record = cjson.encode({callback_id = e.cb, queue_id = e.q, requested_at = e.ra, due_ts = e.du or cjson.null})
    if redis.call("HSETNX", CB, e.cb, record) == 1 then redis.call("HINCRBY", CBN, e.q, 1) end
    keep(CB, cb_ttl); keep(CBN, cb_ttl)
  end
  if not once(e) then return false end
  activity(e, "callbacks_requested", 1)
  return true
end

handlers.x = function(e)  -- callback.completed
  local k = KEYS[e.cl]
  redis.call("HSET", k, "done", 1)
  keep(k, ttl)
  local record = redis.call("HGET", CB, e.cb)
  if record then
    redis.call("HDEL", CB, e.cb)
    local ok, item = pcall(cjson.decode, record)
    if ok and type(item) == "table" and type(item.queue_id) == "string" then
      redis.call("HINCRBY", CBN, item.queue_id, -1)
    end
    keep(CB, cb_ttl); keep(CBN, cb_ttl)
  end
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
for _, r in pairs(agents) do
  local set, del = {}, {}
  for field, value in pairs(r.set) do set[#set + 1] = field; set[#set + 1] = value end
  for field in pairs(r.del) do del[#del + 1] = field end
  if #set > 0 then redis.call("HSET", r.key, unpack(set)) end
  if #del > 0 then redis.call("HDEL", r.key, unpack(del)) end
  touched[r.key] = ttl * 3
end
for key, seconds in pairs(touched) do redis.call("EXPIRE", key, seconds) end
for set, ids in pairs(members) do
  local list = {}
  for id in pairs(ids) do list[#list + 1] = id end
  if #list > 0 then redis.call("SADD", set, unpack(list)) end
end
if applied > 0 and ARGV[3] ~= "" then
  redis.call("PUBLISH", ARGV[3], ARGV[4])
end
return {applied, skipped}
