-- The application role and the tenants table.
--
-- The server connects with DATABASE_URL's user (who owns the tables and runs
-- these migrations) and drops to :app_role inside every tenant transaction
-- (set_config('role', …, true)). :app_role owns nothing and has no BYPASSRLS,
-- so row-level security always applies to it.
DO $$
BEGIN
    CREATE ROLE :app_role NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database on this cluster created it first
END
$$;

DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT %I TO %I', ':app_role', current_user);
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO :app_role;

-- The tenant's own settings (time zone, thresholds, costs), as validated JSON.
CREATE TABLE tenants (
    client_id   text PRIMARY KEY CHECK (client_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (client_id = current_setting('wallboard.tenant', true))
    WITH CHECK (client_id = current_setting('wallboard.tenant', true));
GRANT SELECT, INSERT, UPDATE ON tenants TO :app_role;
