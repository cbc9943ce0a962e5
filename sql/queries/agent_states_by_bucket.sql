-- Agent-state time per agent, bucket, state and reason: $1 tenant, $2 agents to keep (NULL: all), $3 bucket
-- bounds (ascending; the first is the period's start, the last its end), as history_by_bucket.sql.
SELECT agent_id, width_bucket(interval_start, $3::timestamptz[]) AS bucket, state, reason, sum(ms)::bigint AS ms
FROM agent_state_time
WHERE client_id = $1 AND ($2::text[] IS NULL OR agent_id = ANY ($2))
  AND interval_start >= ($3::timestamptz[])[1] AND interval_start < ($3::timestamptz[])[cardinality($3::timestamptz[])]
GROUP BY 1, 2, 3, 4
HAVING sum(ms) <> 0
