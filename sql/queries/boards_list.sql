-- A tenant's boards by name: $1 tenant.
SELECT name, layout, updated_at, updated_by FROM boards WHERE client_id = $1 ORDER BY name
