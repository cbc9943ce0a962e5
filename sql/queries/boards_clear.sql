-- Delete the tenant's boards not in a list: $1 tenant, $2 names to keep.
DELETE FROM boards WHERE client_id = $1 AND NOT (name = ANY($2::text[]))
