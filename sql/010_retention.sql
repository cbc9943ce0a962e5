-- Retention and erasure (server/history/retention.py, DELETE /api/tenant).
--
-- SECURITY DEFINER functions, because the serving role owns nothing and deletes nothing:
--   expired_partitions(events_days, history_days), forget_partition_ids(...), drop_expired_partition(...)
--       list, clear the event ids of, and drop whole partitions (events by day, agent_metrics /
--       customer_satisfaction / call_quality_scores by month) whose upper bound is older than EVERY
--       tenant's retention, each step a short transaction of its own; the arguments are the defaults
--       of tenants that never stored one, floored at 7 and 31 days so that no caller can make them
--       drop recent data. Raw events are never dropped inside a tenant's ingest window (an event
--       still accepted keeps its id).
--   retention_delete_batch(events_days, history_days, max_rows)
--       deletes up to max_rows of the transaction's tenant (the bound tenant: row-level security
--       applies inside, so it cannot reach another tenant) older than the tenant's own retention,
--       from one table; 0 when nothing is left. The caller repeats it, one short transaction each.
--   erase_tenant_batch(max_rows)
--       deletes up to max_rows of the transaction's tenant from one table that has a client_id
--       column (every such table, found in the catalog at run time, so a table added later is
--       covered without a change here); 0 when the tenant has no row left anywhere.
-- The owner reads across tenants only through policies of its own that apply while
-- wallboard.retention = 'on', which these functions set for their own statements.

DO $$
BEGIN
    EXECUTE format('CREATE POLICY retention_sweep ON tenants FOR SELECT TO %I '
                   'USING (current_setting(''wallboard.retention'', true) = ''on'')', current_user);
    EXECUTE format('CREATE POLICY retention_sweep ON event_ids FOR ALL TO %I '
                   'USING (current_setting(''wallboard.retention'', true) = ''on'')', current_user);
END
$$;

-- The largest retention any tenant asked for (its stored setting, else the default given).
CREATE FUNCTION retention_longest(setting text, default_days integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    longest integer;
BEGIN
    PERFORM set_config('wallboard.retention', 'on', true);
    SELECT max((settings ->> setting)::integer) INTO longest FROM tenants WHERE settings ? setting;
    PERFORM set_config('wallboard.retention', '', true);
    RETURN greatest(coalesce(longest, default_days), default_days);
END
$$;
REVOKE ALL ON FUNCTION retention_longest(text, integer) FROM PUBLIC;

-- The partitions of events (days) and of the history tables (months) whose upper bound is older than
-- every tenant's retention, oldest first.
CREATE FUNCTION expired_partitions(events_days integer, history_days integer) RETURNS TABLE (name text, parent text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    events_before date := (now() AT TIME ZONE 'UTC')::date
        - greatest(retention_longest('raw_event_retention_days', greatest(events_days, 7)),
                   retention_longest('ingest_window_days', 0));
    history_before date := (now() AT TIME ZONE 'UTC')::date
        - retention_longest('history_retention_days', greatest(history_days, 31));
BEGIN
    RETURN QUERY
    SELECT c.relname::text, p.relname::text
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
    WHERE p.relnamespace = current_schema()::regnamespace
      AND CASE  -- a CASE, not AND/OR: the date is parsed only from a name of the right shape
          WHEN p.relname = 'events' AND c.relname ~ '^events_\d{8}$'
              THEN to_date(right(c.relname, 8), 'YYYYMMDD') + 1 <= events_before
          WHEN p.relname IN ('agent_metrics', 'customer_satisfaction', 'call_quality_scores')
               AND c.relname ~ ('^' || p.relname || '_\d{6}$')
              THEN (to_date(right(c.relname, 6), 'YYYYMM') + interval '1 month')::date <= history_before
          ELSE false
      END
    ORDER BY right(c.relname, 8), c.relname;
END
$$;
REVOKE ALL ON FUNCTION expired_partitions(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION expired_partitions(integer, integer) TO :app_role;

-- Before an expired day of events is dropped, its ids leave event_ids: the rows of `blocks` pages of
-- the partition from page `first` (a TID range scan: each call reads only its pages). Returns the
-- next page to do, or -1 when the partition is done. One short transaction per call.
CREATE FUNCTION forget_partition_ids(part text, events_days integer, history_days integer, first integer,
                                     blocks integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    pages integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM expired_partitions(events_days, history_days) e
                   WHERE e.name = part AND e.parent = 'events') THEN
        RAISE EXCEPTION 'forget_partition_ids: % is not an expired partition of events', part;
    END IF;
    pages := pg_relation_size(part::regclass) / current_setting('block_size')::integer;
    IF first >= pages THEN
        RETURN -1;
    END IF;
    PERFORM set_config('wallboard.retention', 'on', true);
    EXECUTE format('DELETE FROM event_ids e USING %I p WHERE p.ctid >= $1::tid AND p.ctid < $2::tid '
                   'AND e.client_id = p.client_id AND e.event_id = p.event_id', part)
        USING format('(%s,0)', first), format('(%s,0)', first + blocks);
    PERFORM set_config('wallboard.retention', '', true);
    RETURN first + blocks;
END
$$;
REVOKE ALL ON FUNCTION forget_partition_ids(text, integer, integer, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION forget_partition_ids(text, integer, integer, integer, integer) TO :app_role;

-- Drop one expired partition, in a transaction of its own: dropping locks the parent, so the lock is
-- held for the drop alone and never waited for longer than lock_timeout (false then: next sweep).
CREATE FUNCTION drop_expired_partition(part text, events_days integer, history_days integer) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET lock_timeout = '500ms' AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM expired_partitions(events_days, history_days) e WHERE e.name = part) THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('wallboard.event_partitions'));
    PERFORM pg_advisory_xact_lock(hashtext('wallboard.history_partitions'));
    EXECUTE format('DROP TABLE %I', part);
    RETURN true;
EXCEPTION WHEN lock_not_available THEN
    RAISE NOTICE 'retention: % is busy, left for the next sweep', part;
    RETURN false;
END
$$;
REVOKE ALL ON FUNCTION drop_expired_partition(text, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION drop_expired_partition(text, integer, integer) TO :app_role;

CREATE FUNCTION retention_delete_batch(events_days integer, history_days integer, max_rows integer) RETURNS bigint
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
            ('call_legs', 'coalesce(completed_at, abandoned_at, answered_at, queued_at)', 'events'),
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
REVOKE ALL ON FUNCTION retention_delete_batch(integer, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION retention_delete_batch(integer, integer, integer) TO :app_role;

CREATE FUNCTION erase_tenant_batch(max_rows integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    tenant text := (SELECT t.tenant FROM wallboard_tenant_bound t);
    target record;
    gone bigint;
BEGIN
    IF tenant IS NULL OR tenant = '' THEN
        RAISE EXCEPTION 'erase_tenant_batch runs inside a tenant transaction (Database.tenant)';
    END IF;
    -- Every table (partitioned parents, not their partitions) with a client_id column; tenants last,
    -- so that an erasure cut short still finds the tenant's settings on its next run.
    FOR target IN
        SELECT c.relname AS name
        FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'client_id' AND NOT a.attisdropped
        WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
        ORDER BY c.relname = 'tenants', c.relname
    LOOP
        EXECUTE format('DELETE FROM %I WHERE (tableoid, ctid) IN (SELECT tableoid, ctid FROM %I '
                       'WHERE client_id = $1 LIMIT $2)', target.name, target.name)
            USING tenant, max_rows;
        GET DIAGNOSTICS gone = ROW_COUNT;
        IF gone > 0 THEN
            RETURN gone;
        END IF;
    END LOOP;
    RETURN 0;
END
$$;
REVOKE ALL ON FUNCTION erase_tenant_batch(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION erase_tenant_batch(integer) TO :app_role;

-- Every tenant the sweep visits: those with settings and those that ever ingested (ids only).
CREATE FUNCTION retention_tenants() RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM set_config('wallboard.retention', 'on', true);
    RETURN QUERY SELECT client_id FROM tenants UNION SELECT client_id FROM live_active ORDER BY 1;
    PERFORM set_config('wallboard.retention', '', true);
END
$$;
REVOKE ALL ON FUNCTION retention_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION retention_tenants() TO :app_role;
