-- Reports that deliver themselves (API.md "Screens and delivery"), and the alert webhooks' signing secret.
--
-- report_schedules: one row per schedule, tenant-isolated like every tenant table. It holds the
-- destination (a webhook URL or an e-mail address) and the per-schedule signing secret, so only the
-- tenant's own transactions see it.
-- report_schedule_due: the scheduler's index of when each schedule runs next, and which process
-- holds a run (claimed_until). Every process scans it across tenants (FOR UPDATE SKIP LOCKED), so
-- the application role may read and write every row, as it may live_pending's (009): it holds
-- tenant and schedule ids and times only, never a destination or a secret.
-- webhook_secrets: the tenant's secret that signs its alert webhooks (tenant-isolated).
CREATE TABLE report_schedules (
    client_id        text NOT NULL,
    schedule_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    report           text NOT NULL,
    parameters       jsonb NOT NULL DEFAULT '{}'::jsonb,
    frequency        text NOT NULL CHECK (frequency IN ('daily', 'weekly', 'monthly')),
    at_time          text NOT NULL,
    weekday          smallint CHECK (weekday BETWEEN 1 AND 7),
    month_day        smallint CHECK (month_day BETWEEN 1 AND 28),
    destination      jsonb NOT NULL,
    secret           text NOT NULL,
    created_by       text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_run_at      timestamptz,
    last_status      text,
    last_error       text,
    last_attempts    integer,
    PRIMARY KEY (client_id, schedule_id)
);

CREATE TABLE report_schedule_due (
    client_id        text NOT NULL,
    schedule_id      uuid NOT NULL,
    next_run_at      timestamptz NOT NULL,
    claimed_until    timestamptz,
    PRIMARY KEY (client_id, schedule_id),
    FOREIGN KEY (client_id, schedule_id) REFERENCES report_schedules ON DELETE CASCADE
);
CREATE INDEX report_schedule_due_next ON report_schedule_due (next_run_at);

CREATE TABLE webhook_secrets (
    client_id        text PRIMARY KEY,
    secret           text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE report_schedules ENABLE ROW LEVEL SECURITY;
ALTER TABLE report_schedules FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON report_schedules
    USING (client_id = (SELECT tenant FROM wallboard_tenant_bound))
    WITH CHECK (client_id = (SELECT tenant FROM wallboard_tenant_bound));
GRANT SELECT, INSERT, UPDATE, DELETE ON report_schedules TO :app_role;

ALTER TABLE webhook_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_secrets
    USING (client_id = (SELECT tenant FROM wallboard_tenant_bound))
    WITH CHECK (client_id = (SELECT tenant FROM wallboard_tenant_bound));
GRANT SELECT, INSERT, UPDATE ON webhook_secrets TO :app_role;

ALTER TABLE report_schedule_due ENABLE ROW LEVEL SECURITY;
ALTER TABLE report_schedule_due FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON report_schedule_due
    USING (client_id = (SELECT tenant FROM wallboard_tenant_bound))
    WITH CHECK (client_id = (SELECT tenant FROM wallboard_tenant_bound));
CREATE POLICY schedule_claims ON report_schedule_due TO :app_role USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON report_schedule_due TO :app_role;
