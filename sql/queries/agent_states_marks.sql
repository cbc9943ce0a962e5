-- The first login and the last logout of each agent per bucket (agent_state_marks): $1 tenant, $2 agents
-- (NULL: all), $3 bucket bounds as agent_states_by_bucket.sql.
SELECT agent_id, width_bucket(at, $3::timestamptz[]) AS bucket,
       min(at) FILTER (WHERE kind = 'login') AS first_login, max(at) FILTER (WHERE kind = 'logout') AS last_logout
FROM agent_state_marks
WHERE client_id = $1 AND ($2::text[] IS NULL OR agent_id = ANY ($2))
  AND at >= ($3::timestamptz[])[1] AND at < ($3::timestamptz[])[cardinality($3::timestamptz[])]
GROUP BY 1, 2
