-- The tenant of a transaction, bound so that the serving login role cannot forge it.
--
-- Until now every policy compared client_id with current_setting('wallboard.tenant'), a setting
-- any session may change: SQL run by the serving role (an injection, were there one) could
-- set_config('wallboard.tenant', 'other', true) and read another tenant's rows. Now the policies
-- ask wallboard_tenant(), which believes wallboard.tenant only
--   * when the session's login role has the owner's privileges (the owner or a superuser, who can
--     read every row anyway: migrations, seeding, the single-URL mode), or
--   * when wallboard.tenant_proof is sha256(key || sha256(key || "<backend pid>:<tenant>")) with the
--     key below, which only the owner can read. The server reads it through
--     WALLBOARD_MIGRATE_DATABASE_URL at start-up and sets the proof with the tenant in
--     Database.tenant(); the login role can neither read the key nor compute another tenant's proof,
--     and a proof is void on any other backend.
-- Policies call it as (SELECT wallboard_tenant()): an init plan, evaluated once per statement.
-- A new tenant table's policy must use the same expression (tests/test_db_roles.py checks).
CREATE TABLE tenant_binding_key (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    key       bytea NOT NULL
);
REVOKE ALL ON tenant_binding_key FROM PUBLIC;
INSERT INTO tenant_binding_key (key)
SELECT sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || clock_timestamp()::text, 'UTF8'));

-- PL/pgSQL, not SQL: a SQL function that cannot be inlined is parsed and planned again in every
-- statement that calls it (0.7 ms), a PL/pgSQL one keeps its plans for the session.
CREATE FUNCTION wallboard_tenant() RETURNS text
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    tenant text := current_setting('wallboard.tenant', true);
    k bytea;
BEGIN
    IF pg_has_role(session_user, current_user, 'USAGE') THEN
        RETURN tenant;
    END IF;
    SELECT key INTO k FROM tenant_binding_key;
    IF current_setting('wallboard.tenant_proof', true)
       = encode(sha256(k || sha256(k || convert_to(pg_backend_pid()::text || ':' || tenant, 'UTF8'))), 'hex') THEN
        RETURN tenant;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION wallboard_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wallboard_tenant() TO :app_role;

DO $$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT schemaname, tablename FROM pg_policies
             WHERE policyname = 'tenant_isolation' AND schemaname = current_schema() LOOP
        EXECUTE format('ALTER POLICY tenant_isolation ON %I.%I USING (client_id = (SELECT wallboard_tenant())) '
                       'WITH CHECK (client_id = (SELECT wallboard_tenant()))', p.schemaname, p.tablename);
    END LOOP;
END
$$;

CREATE OR REPLACE VIEW agent_scorecards_mine WITH (security_barrier) AS
SELECT * FROM agent_scorecards WHERE client_id = (SELECT wallboard_tenant());

-- Temporary tables would let the serving role shadow a table by name (pg_temp comes first in the
-- search path) for the later transactions of its pooled connection: only the owner keeps TEMP.
DO $$
BEGIN
    IF pg_has_role(current_user, (SELECT datdba FROM pg_database WHERE datname = current_database()), 'USAGE') THEN
        EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    END IF;
END
$$;
