-- CSAT/NPS responses in time order: $1 tenant, $2 from, $3 to, $4 one agent (NULL: all).
SELECT responded_at, event_id, call_id, agent_id, csat, nps, comment
FROM customer_satisfaction
WHERE client_id = $1 AND responded_at >= $2 AND responded_at < $3 AND ($4::text IS NULL OR agent_id = $4)
ORDER BY responded_at, event_id
