-- Read a tenant's live state in one round trip.
--
-- KEYS[1]  the tenant's "ready" key       KEYS[2] its queues set     KEYS[3] its agents set
-- KEYS[4]  the tenant day's counters      KEYS[5] the pending callbacks hash
-- KEYS[6]  the pending callbacks per queue
-- then, for each queue the caller knows (ARGV[6…]): its day hash, its interval hash, its waiting zset;
-- then, for each agent it knows (after the queues): its record, its day hash, and with ARGV[2] = "1"
-- its state changes (server/live/members.py declares them; no key name is built here).
-- ARGV[1]  day start (ms)
-- ARGV[2]  "1" to include agents' state changes since the day start (occupancy)
-- ARGV[3]  drop waiting calls queued before this ts (ms): lost legs never wait forever
-- ARGV[4]  the most waiting calls listed per queue (oldest first); "0": no list, no callbacks
-- ARGV[5]  how many queues the caller knows; ARGV[6…] the queue ids, then the agent ids
--
-- Returns {ready, queues, tenant_day, agents, callbacks} where ready is "1", "rebuilding" or nil, and
--   queues = {{queue_id, day_hash, interval_hash, waiting, oldest_ts, callbacks_pending, calls}, …}
--   calls = {call_id, queued_ts, …} (the wait zset WITHSCORES, oldest first), or nil
--   agents = {{agent_id, agent_hash, agent_day_hash, changes}, …}
--   callbacks = the pending callbacks hash (callback_id, JSON, …), or nil
-- (hashes as flat field/value lists, as HGETALL gives them); {ready} alone when not "1"; and
-- {ready, "members", queue_ids, agent_ids}, having read nothing else, when the members sets differ
-- from the ids the caller declared (it learns them and calls again).
local ready = redis.call("GET", KEYS[1])
if ready ~= "1" then return {ready} end
local day_start, changes = ARGV[1], ARGV[2] == "1"
local listed, nq = tonumber(ARGV[4]), tonumber(ARGV[5])
local qids, aids = {}, {}
for i = 6, 5 + nq do qids[#qids + 1] = ARGV[i] end
for i = 6 + nq, #ARGV do aids[#aids + 1] = ARGV[i] end

local function same(members, ids)
  if #members ~= #ids then return false end
  local known = {}
  for _, id in ipairs(ids) do known[id] = true end
  for _, m in ipairs(members) do
    if not known[m] then return false end
  end
  return true
end
local queue_set, agent_set = redis.call("SMEMBERS", KEYS[2]), redis.call("SMEMBERS", KEYS[3])
if not (same(queue_set, qids) and same(agent_set, aids)) then
  return {ready, "members", queue_set, agent_set}
end

local pending = {}  -- pending callbacks per queue
local counts = redis.call("HGETALL", KEYS[6])
for i = 1, #counts, 2 do pending[counts[i]] = tonumber(counts[i + 1]) end
local queues = {}
for i, q in ipairs(qids) do
  local at = 6 + 3 * (i - 1)
  local wait = KEYS[at + 3]
  redis.call("ZREMRANGEBYSCORE", wait, "-inf", "(" .. ARGV[3])
  local oldest = redis.call("ZRANGE", wait, 0, 0, "WITHSCORES")
  queues[#queues + 1] = {
    q,
    redis.call("HGETALL", KEYS[at + 1]),
    redis.call("HGETALL", KEYS[at + 2]),
    redis.call("ZCARD", wait),
    oldest[2] or false,
    pending[q] or 0,
    listed > 0 and redis.call("ZRANGE", wait, 0, listed - 1, "WITHSCORES") or false,
  }
end
local agents = {}
local per = changes and 3 or 2
for j, a in ipairs(aids) do
  local at = 6 + 3 * nq + per * (j - 1)
  local hash = redis.call("HGETALL", KEYS[at + 1])
  if #hash > 0 then
    local moves = false
    if changes then
      local tr = KEYS[at + 3]
      moves = redis.call("ZREVRANGEBYSCORE", tr, "(" .. day_start, "-inf", "LIMIT", 0, 1)
      for _, m in ipairs(redis.call("ZRANGEBYSCORE", tr, day_start, "+inf")) do
        moves[#moves + 1] = m
      end
    end
    agents[#agents + 1] = {a, hash, redis.call("HGETALL", KEYS[at + 2]), moves}
  end
end
return {ready, queues, redis.call("HGETALL", KEYS[4]), agents,
        listed > 0 and redis.call("HGETALL", KEYS[5]) or false}
