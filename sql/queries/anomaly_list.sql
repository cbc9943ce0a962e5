-- Anomalies and threshold alerts of a period, newest first: $1 tenant, $2 from, $3 to (exclusive),
-- $4 queue (NULL: all), $5 kind (NULL: both), $6 limit.
SELECT anomaly_id, kind, queue_id, interval_start, metric, observed, expected, score, raised_at, cleared_at
FROM anomaly_detection
WHERE client_id = $1 AND interval_start >= $2 AND interval_start < $3
  AND ($4::text IS NULL OR queue_id = $4) AND ($5::text IS NULL OR kind = $5)
ORDER BY interval_start DESC, anomaly_id DESC
LIMIT $6
