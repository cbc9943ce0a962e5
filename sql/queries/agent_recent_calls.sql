-- An agent's latest handled calls of a period: $1 tenant, $2 agent, $3 from, $4 to.
SELECT call_id, queue_id, completed_at, handle_s, talk_s, resolved, transferred
FROM agent_metrics
WHERE client_id = $1 AND agent_id = $2 AND completed_at >= $3 AND completed_at < $4
ORDER BY completed_at DESC
LIMIT 20
