-- Each agent's latest agent.state (agent_state_heads) when it began before $3: the open state, which no rollup
-- holds (readers count it up to now). $1 tenant, $2 agents (NULL: all), $3 the period's end (epoch ms).
SELECT agent_id, ts_ms, state, reason
FROM agent_state_heads
WHERE client_id = $1 AND ($2::text[] IS NULL OR agent_id = ANY ($2)) AND ts_ms < $3
