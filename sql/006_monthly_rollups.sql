-- The rollups per tenant month: the same counters as performance_daily, summed over the tenant days of
-- one calendar month (`month` = the first day of it; days as performance_daily keeps them, in the tenant's
-- time zone and day start as of the event). Kept by events_store.sql in the ingest statement beside the
-- daily rows and rewritten by history_rebuild.sql with them, so a month's row always equals the sum of
-- its daily rows; a history query over whole months reads one row per key and month instead of ~30.
CREATE TABLE performance_monthly (LIKE performance_daily INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE performance_monthly RENAME COLUMN day TO month;
ALTER TABLE performance_monthly ADD CONSTRAINT performance_monthly_first_day CHECK (extract(day FROM month) = 1);
ALTER TABLE performance_monthly ADD PRIMARY KEY (client_id, dimension, key, month);
CREATE INDEX performance_monthly_time ON performance_monthly (client_id, dimension, month);

-- The months of the daily rows already kept. Row-level security is forced on performance_daily, the owner
-- included: a policy of the owner alone, for this statement only, lets it read every tenant's rows (a
-- superuser owner needs none of this). performance_monthly's own security is switched on after it.
DO $$
BEGIN
    EXECUTE format('CREATE POLICY monthly_backfill ON performance_daily FOR SELECT TO %I USING (true)', current_user);
END
$$;
INSERT INTO performance_monthly (client_id, dimension, key, month, offered, answered, abandoned, short_abandoned,
    answered_within_sl, abandoned_within_sl, handled, handle_ms, talk_ms, hold_ms, wrap_ms, wait_answered_ms,
    wait_abandoned_ms, resolved, resolved_given, transferred, csat_n, csat_sum, csat_satisfied, nps_n,
    nps_promoters, nps_detractors, quality_n, quality_milli)
SELECT client_id, dimension, key, date_trunc('month', day)::date, sum(offered), sum(answered), sum(abandoned),
       sum(short_abandoned), sum(answered_within_sl), sum(abandoned_within_sl), sum(handled), sum(handle_ms),
       sum(talk_ms), sum(hold_ms), sum(wrap_ms), sum(wait_answered_ms), sum(wait_abandoned_ms), sum(resolved),
       sum(resolved_given), sum(transferred), sum(csat_n), sum(csat_sum), sum(csat_satisfied), sum(nps_n),
       sum(nps_promoters), sum(nps_detractors), sum(quality_n), sum(quality_milli)
FROM performance_daily
GROUP BY 1, 2, 3, 4;
DROP POLICY monthly_backfill ON performance_daily;

ALTER TABLE performance_monthly ENABLE ROW LEVEL SECURITY;
ALTER TABLE performance_monthly FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON performance_monthly
    USING (client_id = current_setting('wallboard.tenant', true))
    WITH CHECK (client_id = current_setting('wallboard.tenant', true));
GRANT SELECT, INSERT, UPDATE ON performance_monthly TO :app_role;
