-- Hold time from hold spans. A completed leg's hold time is the sum of its hold spans when the agent who
-- completed it put the call on hold in that queue at least once (call.hold / call.unhold naming the
-- queue), else the completion's own hold_s (connectors that report only the total):
--
--   holds             the leg's hold and unhold events, as a JSON array of [ts_ms, 1 hold | 0 unhold,
--                     agent_id, event_id], each stored once (the event_ids table refuses a duplicate)
--   reported_hold_ms  the completion's hold_s in ms
--   hold_ms           (existing) the hold time counted into the rollups: leg_hold_ms() of the above
--   hold_news         what the latest write changed in the hold time of a leg completed before it
--                     (a hold or unhold arriving after its completion): read back by the same statement,
--                     which adds it to the completion's rollup rows, as `news` does for the facts
--
-- A leg row can now exist with only hold events (they may arrive before anything else of the call).

ALTER TABLE call_legs
    ADD COLUMN holds jsonb,
    ADD COLUMN reported_hold_ms bigint,
    ADD COLUMN hold_news bigint NOT NULL DEFAULT 0;

-- The sum of an agent's hold spans in `marks` up to `done_ms`, NULL when that agent has no hold mark at all.
-- Marks are taken in event time (ts, then event id): a span runs from a hold to the next unhold, or to
-- done_ms when none comes before it; marks after done_ms do not count; a hold while on hold changes nothing
-- (the span counts from the first), an unhold while off hold neither.
CREATE FUNCTION hold_span_ms(marks jsonb, agent text, done_ms bigint) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    m record;
    total bigint := 0;
    since bigint;
    held boolean := false;
BEGIN
    FOR m IN SELECT (x ->> 0)::bigint AS ts, (x ->> 1)::int AS flag
             FROM jsonb_array_elements(marks) AS x
             WHERE x ->> 2 = agent
             ORDER BY 1, (x ->> 3) COLLATE "C" LOOP
        IF m.flag = 1 THEN
            held := true;
            IF m.ts <= done_ms AND since IS NULL THEN
                since := m.ts;
            END IF;
        ELSIF m.ts <= done_ms AND since IS NOT NULL THEN
            total := total + m.ts - since;
            since := NULL;
        END IF;
    END LOOP;
    IF NOT held THEN
        RETURN NULL;
    END IF;
    RETURN total + coalesce(done_ms - since, 0);
END
$$;

-- A leg's hold time: the spans of the agent who completed it, else the reported hold_s; NULL until completed.
CREATE FUNCTION leg_hold_ms(marks jsonb, agent text, completed_at timestamptz, reported_ms bigint) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF completed_at IS NULL THEN
        RETURN NULL;
    ELSIF marks IS NULL THEN
        RETURN reported_ms;
    END IF;
    RETURN coalesce(hold_span_ms(marks, agent, round(extract(epoch FROM completed_at) * 1000)::bigint), reported_ms);
END
$$;

-- A late hold or unhold corrects the per-call record of its completed leg (hold_s, handle_s).
GRANT UPDATE ON agent_metrics TO :app_role;
GRANT EXECUTE ON FUNCTION hold_span_ms(jsonb, text, bigint) TO :app_role;
GRANT EXECUTE ON FUNCTION leg_hold_ms(jsonb, text, timestamptz, bigint) TO :app_role;

-- Retention: a leg that only hold events made (no queued, answered, abandoned or completed ts) goes with its
-- first hold's ts; 010_retention.sql's function otherwise unchanged.
CREATE OR REPLACE FUNCTION retention_delete_batch(events_days integer, history_days integer, max_rows integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    tenant text := (SELECT t.tenant FROM wallboard_tenant_bound t);
    stored jsonb;
    events_before timestamptz;
    history_before timestamptz;
    target record;
    gone bigint;
BEGIN
    IF tenant IS NULL OR tenant = '' THEN
        RAISE EXCEPTION 'retention_delete_batch runs inside a tenant transaction (Database.tenant)';
    END IF;
    SELECT settings INTO stored FROM tenants WHERE client_id = tenant;
    events_before := now() - make_interval(days => greatest(coalesce((stored ->> 'raw_event_retention_days')::integer,
                                                                     events_days), 7,
                                                            coalesce((stored ->> 'ingest_window_days')::integer, 0)));
    history_before := now() - make_interval(days => greatest(coalesce((stored ->> 'history_retention_days')::integer,
                                                                      history_days), 31));
    FOR target IN
        SELECT * FROM (VALUES
            ('call_legs', 'coalesce(completed_at, abandoned_at, answered_at, queued_at, '
                           'to_timestamp((holds -> 0 ->> 0)::bigint / 1000.0))', 'events'),
            ('agent_metrics', 'completed_at', 'history'),
            ('customer_satisfaction', 'responded_at', 'history'),
            ('call_quality_scores', 'scored_at', 'history'),
            ('performance_trends', 'interval_start', 'history'),
            ('performance_daily', 'day', 'history'),
            ('performance_monthly', 'month', 'history'),
            ('agent_state_time', 'interval_start', 'history'),
            ('agent_state_marks', 'at', 'history'),
            ('predictive_analytics', 'interval_start', 'history'),
            ('anomaly_detection', 'interval_start', 'history'),
            ('analytics_audit_log', 'at', 'history')
        ) AS t(name, at, kind)
    LOOP
        EXECUTE format('DELETE FROM %I WHERE (tableoid, ctid) IN (SELECT tableoid, ctid FROM %I '
                       'WHERE client_id = $1 AND %s < $2 LIMIT $3)', target.name, target.name, target.at)
            USING tenant, CASE WHEN target.kind = 'events' THEN events_before ELSE history_before END, max_rows;
        GET DIAGNOSTICS gone = ROW_COUNT;
        IF gone > 0 THEN
            RETURN gone;
        END IF;
    END LOOP;
    -- Raw events last, with their ids (the ids keep "unique per tenant" only while the event is kept).
    WITH old AS (
        DELETE FROM events WHERE (tableoid, ctid) IN (SELECT tableoid, ctid FROM events
                                                     WHERE client_id = tenant AND ts < events_before LIMIT max_rows)
        RETURNING event_id
    ), ids AS (
        DELETE FROM event_ids WHERE client_id = tenant AND event_id IN (SELECT event_id FROM old)
    )
    SELECT count(*) INTO gone FROM old;
    RETURN gone;
END
$$;
