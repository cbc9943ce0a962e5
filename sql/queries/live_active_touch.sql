-- Note tenants whose batches were applied now. $1 tenants.
INSERT INTO live_active AS a (client_id, seen_at)
SELECT t, now() FROM unnest($1::text[]) AS t
ON CONFLICT (client_id) DO UPDATE SET seen_at = excluded.seen_at
