-- A tenant's queue history for the forecast: $1 tenant, $2 from, $3 to (exclusive).
-- One row per queue and 15-minute interval that saw any call (the model reads missing ones as 0).
SELECT key AS queue_id, (extract(epoch FROM interval_start) * 1000)::bigint AS start_ms, offered, handled, handle_ms
FROM performance_trends
WHERE client_id = $1 AND dimension = 'queue' AND interval_start >= $2 AND interval_start < $3
ORDER BY key, interval_start
