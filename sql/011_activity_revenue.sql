-- Counters of the activity events (call.offered, call.missed, call.hold, callback.requested,
-- callback.completed) and the revenue of completed calls, appended to the rollups in the order
-- server/ingest/schema.py declares them; call_legs keeps a completed leg's revenue (hundredths of the
-- tenant's currency) so a rebuild counts it the same way. cost_analysis is dropped: nothing ever filled
-- it, and the rollups (handle_ms, talk_ms, handled per queue, agent and day) with the tenant's cost settings
-- give every cost figure (/api/analytics/costs, /api/analytics/revenue) without a second copy to keep right.
ALTER TABLE call_legs ADD COLUMN revenue_cents bigint;

-- The same columns on the three rollup tables (performance_monthly was made LIKE performance_daily).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['performance_trends', 'performance_daily', 'performance_monthly'] LOOP
        EXECUTE format('ALTER TABLE %I
            ADD COLUMN rings integer NOT NULL DEFAULT 0,
            ADD COLUMN missed integer NOT NULL DEFAULT 0,
            ADD COLUMN missed_ring_ms bigint NOT NULL DEFAULT 0,
            ADD COLUMN holds integer NOT NULL DEFAULT 0,
            ADD COLUMN callbacks_requested integer NOT NULL DEFAULT 0,
            ADD COLUMN callbacks_completed integer NOT NULL DEFAULT 0,
            ADD COLUMN callbacks_reached integer NOT NULL DEFAULT 0,
            ADD COLUMN revenue_cents bigint NOT NULL DEFAULT 0,
            ADD COLUMN converted integer NOT NULL DEFAULT 0', t);
    END LOOP;
END
$$;

DROP TABLE cost_analysis;
