-- Store the tenant's validated settings ($2: the full settings object as JSON text).
INSERT INTO tenants (client_id, settings)
VALUES ($1, $2::jsonb)
ON CONFLICT (client_id) DO UPDATE SET settings = EXCLUDED.settings, updated_at = now()
RETURNING settings
