-- Before storing a new forecast: drop the old one from $2 (the current interval) on, and what is
-- older than $3 (retention). Past intervals keep the forecast they had: anomalies compare with it.
DELETE FROM predictive_analytics
WHERE client_id = $1 AND (interval_start >= $2 OR interval_start < $3)
