-- The tenant's counters of one tenant day, summed over its queues, in one round trip: compared
-- with the same sums from the PostgreSQL rollups (sql/queries/live_checksum.sql) by the
-- reconciliation. KEYS[1] the tenant's "ready" key; ARGV[1] the tenant key prefix; ARGV[2] the day.
-- Returns {ready, offered, answered, abandoned, short_abandoned, answered_within_sl,
--          abandoned_within_sl, handled, handle_ms, wait_answered_ms, wait_abandoned_ms, rings, missed, holds,
--          callbacks_requested, callbacks_completed, revenue_cents, csat_n, quality_n}.
local P, day = ARGV[1], ARGV[2]
local fields = {"offered", "answered", "abandoned", "short_abandoned", "answered_within_sl", "abandoned_within_sl",
                "handled", "handle_ms", "wait_answered_ms", "wait_abandoned_ms", "rings", "missed", "holds",
                "callbacks_requested", "callbacks_completed", "revenue_cents"}
local sums = {}
for i = 1, #fields do sums[i] = 0 end
for _, q in ipairs(redis.call("SMEMBERS", P .. "queues")) do
  local values = redis.call("HMGET", P .. "qd:" .. day .. ":" .. q, unpack(fields))
  for i = 1, #fields do sums[i] = sums[i] + tonumber(values[i] or "0") end
end
local td = redis.call("HMGET", P .. "td:" .. day, "csat_n", "quality_n")
local out = {redis.call("GET", KEYS[1]) or false}
for i = 1, #fields do out[#out + 1] = sums[i] end
out[#out + 1] = tonumber(td[1] or "0")
out[#out + 1] = tonumber(td[2] or "0")
return out
