-- Replace the tenant's alert-webhook signing secret: $1 tenant, $2 the new secret.
INSERT INTO webhook_secrets (client_id, secret) VALUES ($1, $2)
ON CONFLICT (client_id) DO UPDATE SET secret = EXCLUDED.secret, created_at = now()
