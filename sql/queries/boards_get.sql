-- One board: $1 tenant, $2 name.
SELECT name, layout, updated_at, updated_by FROM boards WHERE client_id = $1 AND name = $2
