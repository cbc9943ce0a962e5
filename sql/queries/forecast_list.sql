-- The stored forecast of a period: $1 tenant, $2 queue (NULL: all), $3 from, $4 to (exclusive).
SELECT queue_id, (extract(epoch FROM interval_start) * 1000)::bigint AS start_ms, offered, aht_s, required_agents,
       model, accuracy, made_at
FROM predictive_analytics
WHERE client_id = $1 AND ($2::text IS NULL OR queue_id = $2) AND interval_start >= $3 AND interval_start < $4
ORDER BY queue_id, interval_start
