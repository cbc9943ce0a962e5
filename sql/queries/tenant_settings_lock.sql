-- Ensure the tenant's row exists and lock it for the rest of the transaction
-- (the FOR UPDATE of a read-modify-write, also when no row existed yet:
-- ON CONFLICT DO UPDATE takes the row lock, a plain SELECT … FOR UPDATE would
-- lock nothing for a tenant's first PUT). Returns the settings to merge into.
INSERT INTO tenants (client_id)
VALUES ($1)
ON CONFLICT (client_id) DO UPDATE SET client_id = EXCLUDED.client_id
RETURNING settings
