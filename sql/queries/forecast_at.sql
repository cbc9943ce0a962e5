-- The forecast staffing of the given intervals per queue: $1 tenant, $2 interval starts.
SELECT queue_id, (extract(epoch FROM interval_start) * 1000)::bigint AS start_ms, required_agents
FROM predictive_analytics
WHERE client_id = $1 AND interval_start = ANY ($2::timestamptz[]) AND required_agents IS NOT NULL
