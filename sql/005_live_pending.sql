-- The live state's repair records, kept in PostgreSQL because Redis is the thing they guard.
--
-- live_pending: one row per ingest batch, inserted in the batch's own transaction (so it exists
-- exactly when the batch's events do) and deleted once the batch was applied to Redis. A row
-- older than a few seconds is a batch whose process died (or lost Redis) between the commit and
-- the apply: any process rebuilds that tenant's live state from the events.
-- live_active: tenant → the last time a batch of it was applied; which tenants to rebuild when
-- Redis lost its data (Redis's own registry of active tenants is lost with it).
--
-- Row-level security, forced as on every tenant table: the application role (inside a tenant
-- transaction) sees its own tenant's rows only; the server's own role (the owner, outside any
-- tenant transaction) sweeps every tenant's through a policy that applies to it alone. Neither
-- table holds more than tenant ids and times.
CREATE TABLE live_pending (
    client_id   text NOT NULL,
    batch       bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, batch)
);
CREATE INDEX live_pending_created ON live_pending (created_at);

CREATE TABLE live_active (
    client_id   text PRIMARY KEY,
    seen_at     timestamptz NOT NULL
);

ALTER TABLE live_pending ENABLE ROW LEVEL SECURITY;
ALTER TABLE live_pending FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON live_pending
    USING (client_id = current_setting('wallboard.tenant', true))
    WITH CHECK (client_id = current_setting('wallboard.tenant', true));
GRANT INSERT ON live_pending TO :app_role;

ALTER TABLE live_active ENABLE ROW LEVEL SECURITY;
ALTER TABLE live_active FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON live_active
    USING (client_id = current_setting('wallboard.tenant', true))
    WITH CHECK (client_id = current_setting('wallboard.tenant', true));

DO $$
BEGIN
    EXECUTE format('CREATE POLICY live_repair ON live_pending TO %I USING (true) WITH CHECK (true)', current_user);
    EXECUTE format('CREATE POLICY live_repair ON live_active TO %I USING (true) WITH CHECK (true)', current_user);
END
$$;
