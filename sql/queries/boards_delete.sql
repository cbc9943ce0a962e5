-- Delete a board: $1 tenant, $2 name; returns its name when there was one.
DELETE FROM boards WHERE client_id = $1 AND name = $2 RETURNING name
