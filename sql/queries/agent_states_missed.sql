-- call.missed events (ring-no-answer) per agent and bucket, from the events table by its partial index
-- events_client_agent_missed: $1 tenant, $2 agents (NULL: all), $3 bucket bounds.
SELECT agent_id, width_bucket(ts, $3::timestamptz[]) AS bucket, count(*) AS missed
FROM events
WHERE client_id = $1 AND type = 'call.missed' AND agent_id IS NOT NULL
  AND ($2::text[] IS NULL OR agent_id = ANY ($2))
  AND ts >= ($3::timestamptz[])[1] AND ts < ($3::timestamptz[])[cardinality($3::timestamptz[])]
GROUP BY 1, 2
