-- Threshold alerts: the open ones and those raised since $2, newest first: $1 tenant, $2 since, $3 limit.
SELECT anomaly_id, kind, queue_id, interval_start, metric, observed, expected, score, raised_at, cleared_at,
       acked_at, acked_by
FROM anomaly_detection
WHERE client_id = $1 AND kind = 'threshold' AND (cleared_at IS NULL OR raised_at >= $2)
ORDER BY raised_at DESC, anomaly_id DESC
LIMIT $3
