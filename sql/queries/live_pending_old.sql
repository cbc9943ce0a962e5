-- Batches committed more than $1 seconds ago and still not applied: tenant and batch id, oldest first.
SELECT client_id, batch, created_at FROM live_pending
WHERE created_at < now() - make_interval(secs => $1)
ORDER BY created_at
LIMIT 10000
