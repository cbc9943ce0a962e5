-- Named wallboard layouts (GET|PUT|DELETE /api/boards/{name}) and acknowledged threshold alerts.
--
-- boards: one row per (tenant, name); `layout` is the validated JSON of server/live/boards.py
-- (title, tiles, queues, locale, sound, rotate_s). Row-level security on the bound tenant, like
-- every tenant table (008). anomaly_detection gains who acknowledged an alert and when
-- (POST /api/alerts/{id}/ack).
CREATE TABLE boards (
    client_id   text NOT NULL,
    name        text NOT NULL,
    layout      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL DEFAULT '',
    PRIMARY KEY (client_id, name)
);
ALTER TABLE boards ENABLE ROW LEVEL SECURITY;
ALTER TABLE boards FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON boards
    USING (client_id = (SELECT tenant FROM wallboard_tenant_bound))
    WITH CHECK (client_id = (SELECT tenant FROM wallboard_tenant_bound));
GRANT SELECT, INSERT, UPDATE, DELETE ON boards TO :app_role;

ALTER TABLE anomaly_detection ADD COLUMN acked_at timestamptz, ADD COLUMN acked_by text;
