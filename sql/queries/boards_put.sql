-- Create or replace a board: $1 tenant, $2 name, $3 layout (JSON text), $4 who.
INSERT INTO boards (client_id, name, layout, updated_at, updated_by) VALUES ($1, $2, $3::jsonb, now(), $4)
ON CONFLICT (client_id, name) DO UPDATE SET layout = EXCLUDED.layout, updated_at = now(), updated_by = EXCLUDED.updated_by
RETURNING name, layout, updated_at, updated_by
