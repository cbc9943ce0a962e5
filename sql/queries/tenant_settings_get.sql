-- The tenant's stored settings (validated JSON); no row means "all defaults".
-- Runs inside Database.tenant($1), so row-level security also limits it to $1.
SELECT settings
FROM tenants
WHERE client_id = $1
