-- Record a flagged deviation or a raised threshold alert. $1 tenant, $2 queue, $3 interval start,
-- $4 metric, $5 observed, $6 expected (or the threshold), $7 score (z-score; for thresholds 1 amber,
-- 2 red), $8 kind, $9 raised at (NULL: now).
INSERT INTO anomaly_detection (client_id, queue_id, interval_start, metric, observed, expected, score, kind, raised_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, coalesce($9, now()))
RETURNING anomaly_id, raised_at
