-- Handled calls, one row each, in completion order: $1 tenant, $2 from, $3 to, $4 one agent (NULL: all).
SELECT call_id, queue_id, agent_id, queued_at, answered_at, completed_at, talk_s, hold_s, wrap_s, handle_s,
       resolved, transferred, disposition
FROM agent_metrics
WHERE client_id = $1 AND completed_at >= $2 AND completed_at < $3 AND ($4::text IS NULL OR agent_id = $4)
ORDER BY completed_at, call_id, queue_id
