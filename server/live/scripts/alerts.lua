-- Raise and clear a tenant's threshold alerts, each exactly once across server processes.
--
-- KEYS[1]    the tenant's set of open conditions
-- KEYS[1+i]  the key of the condition ARGV[3+i] (server/live/keys.py, Keys.alert_condition)
-- ARGV[1]    when the live state was read (ms): the observation time
-- ARGV[2]    TTL of the condition keys, seconds
-- ARGV[3]    how many of the conditions are breached at that time (they come first)
-- ARGV[4…]   the conditions, as "queue|metric|level": the breached ones, then those the caller last
--            knew open (the open set's members must all be declared)
--
-- A condition breached now and not open is raised; an open one not breached now is
-- cleared. Each condition remembers the newest observation that looked at it: an older
-- one (a slower process's read, still in flight) changes nothing, so a cleared alert is
-- never raised again by a stale view, and two processes never both raise one breach.
--
-- Returns {open_count, id1, state1, id2, state2, …} for the conditions that changed, or
-- {-1, open_id1, open_id2, …}, having changed nothing, when an open condition was not declared
-- (the caller declares the open ones and calls again).

local open = KEYS[1]
local now, ttl, nb = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local index, breached, out = {}, {}, {0}
for i = 4, #ARGV do index[ARGV[i]] = i - 2 end

local members = redis.call("SMEMBERS", open)
for _, id in ipairs(members) do
  if not index[id] then
    local stale = {-1}
    for _, m in ipairs(members) do stale[#stale + 1] = m end
    return stale
  end
end

local function decide(id, want)
  local key = KEYS[index[id]]
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

for i = 4, 3 + nb do
  breached[ARGV[i]] = true
  decide(ARGV[i], true)
end
for _, id in ipairs(members) do
  if not breached[id] then decide(id, false) end
end
out[1] = redis.call("SCARD", open)
if out[1] > 0 then redis.call("EXPIRE", open, ttl) end
return out
