-- Acknowledge a threshold alert (the first acknowledgement stays): $1 tenant, $2 alert id, $3 who.
UPDATE anomaly_detection
SET acked_at = coalesce(acked_at, now()), acked_by = coalesce(acked_by, $3)
WHERE client_id = $1 AND anomaly_id = $2 AND kind = 'threshold'
RETURNING anomaly_id, kind, queue_id, interval_start, metric, observed, expected, score, raised_at, cleared_at,
          acked_at, acked_by
