-- Each agent's last agent.state before $2: where every agent stood when the replay window opens.
SELECT DISTINCT ON (agent_id) event_id, type, ts, queue_id, agent_id, call_id, body::text AS body
FROM events
WHERE client_id = $1 AND type = 'agent.state' AND ts < $2 AND ts >= $3
ORDER BY agent_id, ts DESC
