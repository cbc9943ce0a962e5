-- Each agent's latest agent.state (its head on the agents row) when it began before $3: the open state, which
-- no rollup holds (readers count it up to now). $1 tenant, $2 agents (NULL: all), $3 the period's end (epoch ms).
SELECT agent_id, state_ms AS ts_ms, state, state_reason AS reason
FROM agents
WHERE client_id = $1 AND ($2::text[] IS NULL OR agent_id = ANY ($2)) AND state_ms < $3
