-- Tenants with a batch in the last $1 seconds (or one still pending), for rebuilds after Redis lost its data.
SELECT client_id FROM live_active WHERE seen_at >= now() - make_interval(secs => $1)
UNION
SELECT DISTINCT client_id FROM live_pending
ORDER BY 1
