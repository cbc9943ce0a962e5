-- The tenant's alert-webhook signing secret, created on first use: $1 tenant, $2 a fresh secret (kept only
-- when the tenant has none yet).
INSERT INTO webhook_secrets (client_id, secret) VALUES ($1, $2)
ON CONFLICT (client_id) DO UPDATE SET client_id = EXCLUDED.client_id
RETURNING secret
