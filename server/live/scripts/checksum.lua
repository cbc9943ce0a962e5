-- The tenant's counters of one tenant day, summed over its queues, in one round trip: compared
-- with the same sums from the PostgreSQL rollups (sql/queries/live_checksum.sql) by the
-- reconciliation; and its pending callbacks, counted per queue and as records, compared with each other.
-- KEYS[1] the tenant's "ready" key, KEYS[2] its queues set, KEYS[3] the day's tenant counters,
-- KEYS[4] the pending callbacks hash, KEYS[5] the pending callbacks per queue, then the day hash of
-- each queue the caller knows, in the order of ARGV (the queue ids; server/live/members.py).
-- Returns {ready, offered, answered, abandoned, short_abandoned, answered_within_sl,
--          abandoned_within_sl, handled, handle_ms, wait_answered_ms, wait_abandoned_ms, rings, missed, holds,
--          callbacks_requested, callbacks_completed, revenue_cents, csat_n, quality_n,
--          callbacks_pending (the per-queue counts summed), pending callback records},
-- or {ready, "members", queue_ids}, having read nothing else, when the queues set differs from ARGV.
local fields = {"offered", "answered", "abandoned", "short_abandoned", "answered_within_sl", "abandoned_within_sl",
                "handled", "handle_ms", "wait_answered_ms", "wait_abandoned_ms", "rings", "missed", "holds",
                "callbacks_requested", "callbacks_completed", "revenue_cents"}
local ready = redis.call("GET", KEYS[1]) or false
local members = redis.call("SMEMBERS", KEYS[2])
local declared = {}
for _, q in ipairs(ARGV) do declared[q] = true end
local same = #members == #ARGV
for _, q in ipairs(members) do same = same and declared[q] == true end
if not same then return {ready, "members", members} end
local sums = {}
for i = 1, #fields do sums[i] = 0 end
for i = 1, #ARGV do
  local values = redis.call("HMGET", KEYS[5 + i], unpack(fields))
  for j = 1, #fields do sums[j] = sums[j] + tonumber(values[j] or "0") end
end
local td = redis.call("HMGET", KEYS[3], "csat_n", "quality_n")
local out = {ready}
for i = 1, #fields do out[#out + 1] = sums[i] end
out[#out + 1] = tonumber(td[1] or "0")
out[#out + 1] = tonumber(td[2] or "0")
local counted = 0
for _, n in ipairs(redis.call("HVALS", KEYS[5])) do counted = counted + tonumber(n) end
out[#out + 1] = counted
out[#out + 1] = redis.call("HLEN", KEYS[4])
return out
