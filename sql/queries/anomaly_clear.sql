-- Clear a threshold alert: the open one of (queue, metric, level). $1 tenant, $2 queue, $3 metric,
-- $4 level score (1 amber, 2 red), $5 cleared at.
UPDATE anomaly_detection
SET cleared_at = $5
WHERE client_id = $1 AND kind = 'threshold' AND queue_id = $2 AND metric = $3 AND score = $4 AND cleared_at IS NULL
RETURNING anomaly_id
