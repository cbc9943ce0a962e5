-- Raise and clear a tenant's threshold alerts, each exactly once across server processes.
--
-- KEYS[1]  the tenant's set of open conditions (its name declares the tenant's hash slot)
-- ARGV[1]  the tenant's alert key prefix, e.g. "wb:alertstate:{acme}:"
-- ARGV[2]  when the live state was read (ms): the observation time
-- ARGV[3]  TTL of the condition keys, seconds
-- ARGV[4…] the conditions breached at that time, as "queue|metric|level"
--
-- A condition breached now and not open is raised; an open one not breached now is
-- cleared. Each condition remembers the newest observation that looked at it: an older
-- one (a slower process's read, still in flight) changes nothing, so a cleared alert is
-- never raised again by a stale view, and two processes never both raise one breach.
--
-- Returns {open_count, id1, state1, id2, state2, …} for the conditions that changed.

local open, P = KEYS[1], ARGV[1]
local now, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local breached, out = {}, {0}

local function decide(id, want)
  local key = P .. "c:" .. id
  local at = tonumber(redis.call("HGET", key, "at") or "0")
  if now <= at then return end
  redis.call("HSET", key, "at", now)
  redis.call("EXPIRE", key, ttl)
  local is_open = redis.call("SISMEMBER", open, id) == 1
  if want and not is_open then
    redis.call("SADD", open, id)
    out[#out + 1] = id
    out[#out + 1] = "raised"
  elseif is_open and not want then
    redis.call("SREM", open, id)
    out[#out + 1] = id
    out[#out + 1] = "cleared"
  end
end

for i = 4, #ARGV do
  breached[ARGV[i]] = true
  decide(ARGV[i], true)
end
for _, id in ipairs(redis.call("SMEMBERS", open)) do
  if not breached[id] then decide(id, false) end
end
out[1] = redis.call("SCARD", open)
if out[1] > 0 then redis.call("EXPIRE", open, ttl) end
return out
