-- Forget batches applied to the live state (or covered by a rebuild). $1 tenants, $2 batch ids (parallel arrays).
DELETE FROM live_pending p
USING unnest($1::text[], $2::bigint[]) AS d(client_id, batch)
WHERE p.client_id = d.client_id AND p.batch = d.batch
