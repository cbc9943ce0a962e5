-- Read a tenant's live state in one round trip.
--
-- KEYS[1]  the tenant's "ready" key
-- ARGV[1]  tenant key prefix     ARGV[2]  tenant day ("YYYY-MM-DD")
-- ARGV[3]  current interval start (ms)   ARGV[4]  day start (ms)
-- ARGV[5]  "1" to include agents' state changes since the day start (occupancy)
-- ARGV[6]  drop waiting calls queued before this ts (ms): lost legs never wait forever
-- ARGV[7]  the most waiting calls listed per queue (oldest first); "0": no list, no callbacks
--
-- Returns {ready, queues, tenant_day, agents, callbacks} where ready is "1", "rebuilding" or nil, and
--   queues = {{queue_id, day_hash, interval_hash, waiting, oldest_ts, callbacks_pending, calls}, …}
--   calls = {call_id, queued_ts, …} (the wait zset WITHSCORES, oldest first), or nil
--   agents = {{agent_id, agent_hash, agent_day_hash, changes}, …}
--   callbacks = the pending callbacks hash (callback_id, JSON, …), or nil
-- (hashes as flat field/value lists, as HGETALL gives them).
local P = ARGV[1]
local day, iv, day_start = ARGV[2], ARGV[3], ARGV[4]
local listed = tonumber(ARGV[7])
local ready = redis.call("GET", KEYS[1])
local pending = {}  -- pending callbacks per queue
for _, v in ipairs(redis.call("HVALS", P .. "cb")) do
  local q = cjson.decode(v).queue_id
  pending[q] = (pending[q] or 0) + 1
end
local queues = {}
for _, q in ipairs(redis.call("SMEMBERS", P .. "queues")) do
  local wait = P .. "wait:" .. q
  redis.call("ZREMRANGEBYSCORE", wait, "-inf", "(" .. ARGV[6])
  local oldest = redis.call("ZRANGE", wait, 0, 0, "WITHSCORES")
  queues[#queues + 1] = {
    q,
    redis.call("HGETALL", P .. "qd:" .. day .. ":" .. q),
    redis.call("HGETALL", P .. "qi:" .. iv .. ":" .. q),
    redis.call("ZCARD", wait),
    oldest[2] or false,
    pending[q] or 0,
    listed > 0 and redis.call("ZRANGE", wait, 0, listed - 1, "WITHSCORES") or false,
  }
end
local agents = {}
for _, a in ipairs(redis.call("SMEMBERS", P .. "agents")) do
  local hash = redis.call("HGETALL", P .. "ag:" .. a)
  if #hash > 0 then
    local changes = false
    if ARGV[5] == "1" then
      local tr = P .. "agt:" .. a
      changes = redis.call("ZREVRANGEBYSCORE", tr, "(" .. day_start, "-inf", "LIMIT", 0, 1)
      for _, m in ipairs(redis.call("ZRANGEBYSCORE", tr, day_start, "+inf")) do
        changes[#changes + 1] = m
      end
    end
    agents[#agents + 1] = {a, hash, redis.call("HGETALL", P .. "ad:" .. day .. ":" .. a), changes}
  end
end
return {ready, queues, redis.call("HGETALL", P .. "td:" .. day), agents,
        listed > 0 and redis.call("HGETALL", P .. "cb") or false}
