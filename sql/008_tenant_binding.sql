-- The tenant of a transaction, bound so that the serving login role cannot forge it.
--
-- Until now every policy compared client_id with current_setting('wallboard.tenant'), a setting
-- any session may change: SQL run by the serving role (an injection, were there one) could
-- set_config('wallboard.tenant', 'other', true) and read another tenant's rows. Now the policies
-- ask the view wallboard_tenant_bound, which believes wallboard.tenant only
--   * when the session's login role has the owner's privileges (the owner or a superuser, who can
--     read every row anyway: migrations, seeding, the single-URL mode), or
--   * when wallboard.tenant_proof is sha256(key || sha256(key || "<backend pid>:<tenant>")) with the
--     key below, which only the owner can read. The server reads it through
--     WALLBOARD_MIGRATE_DATABASE_URL at start-up and sets the proof with the tenant in
--     Database.tenant(); the login role can neither read the key nor compute another tenant's proof,
--     and a proof is void on any other backend.
-- Policies read it as (SELECT tenant FROM wallboard_tenant_bound): an init plan, evaluated once per statement.
-- A new tenant table's policy must use the same expression (tests/test_db_roles.py checks).
CREATE TABLE tenant_binding_key (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    key       bytea NOT NULL
);
REVOKE ALL ON tenant_binding_key FROM PUBLIC;
INSERT INTO tenant_binding_key (key)
SELECT sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || clock_timestamp()::text, 'UTF8'));

-- A view, not a function: the policies inline it (a one-row scan in an init plan), where a SQL
-- function would be parsed and planned again in every statement and a PL/pgSQL one costs a query
-- of its own. The view reads the key as its owner; whoever selects from it gets back only the tenant
-- it verified. The owner is named by oid, so a renamed owner keeps its rights.
DO $$
BEGIN
    EXECUTE format($view$
CREATE VIEW wallboard_tenant_bound WITH (security_barrier) AS
SELECT current_setting('wallboard.tenant', true) AS tenant
FROM tenant_binding_key k
WHERE pg_has_role(session_user, %s::oid, 'USAGE')
   OR current_setting('wallboard.tenant_proof', true)
      = encode(sha256(k.key || sha256(k.key
          || convert_to(pg_backend_pid()::text || ':' || current_setting('wallboard.tenant', true), 'UTF8'))), 'hex')
$view$, (SELECT oid FROM pg_roles WHERE rolname = current_user));
END
$$;
REVOKE ALL ON wallboard_tenant_bound FROM PUBLIC;
GRANT SELECT ON wallboard_tenant_bound TO :app_role;

DO $$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT schemaname, tablename FROM pg_policies
             WHERE policyname = 'tenant_isolation' AND schemaname = current_schema() LOOP
        EXECUTE format('ALTER POLICY tenant_isolation ON %I.%I USING (client_id = (SELECT tenant FROM wallboard_tenant_bound)) '
                       'WITH CHECK (client_id = (SELECT tenant FROM wallboard_tenant_bound))', p.schemaname, p.tablename);
    END LOOP;
END
$$;

CREATE OR REPLACE VIEW agent_scorecards_mine WITH (security_barrier) AS
SELECT * FROM agent_scorecards WHERE client_id = (SELECT tenant FROM wallboard_tenant_bound);

-- Temporary tables would let the serving role shadow a table by name (pg_temp comes first in the
-- search path) for the later transactions of its pooled connection: only the owner keeps TEMP.
DO $$
BEGIN
    IF pg_has_role(current_user, (SELECT datdba FROM pg_database WHERE datname = current_database()), 'USAGE') THEN
        EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    END IF;
END
$$;
