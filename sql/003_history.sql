-- History: the analytics tables and the rollups that answer every history query.
--
-- The names and meanings are the ones reports of the previous system are built on:
--   agent_metrics          one row per handled call, per agent
--   call_quality_scores    quality reviews of calls (events and POST /api/analytics/calls/quality)
--   customer_satisfaction  CSAT / NPS responses
--   performance_trends     the time-series aggregates: counters per 15-minute interval × queue,
--                          × agent, and for the whole tenant (performance_daily: the same per
--                          tenant day, which day/week/month queries over whole days read)
--   cost_analysis          costs per day × queue × agent (from the tenant's cost settings)
--   predictive_analytics   forecasts per queue and interval
--   anomaly_detection      what deviated from the forecast or crossed a threshold
--   analytics_audit_log    who exported, wrote or changed settings, and when
--
-- call_legs is the working table behind the rollups: one row per (call, queue)
-- with each fact (queued, answered, abandoned, completed) recorded the first
-- time it is known. A rollup counter moves exactly when a fact becomes known,
-- and a wait-dependent counter when both ends of the wait are known, whichever
-- came first: the same rule as the live state (server/live/scripts/apply.lua),
-- so history and the live view never disagree.
--
-- Every key and index starts with client_id; every table has row-level
-- security, enabled and forced, on client_id = the transaction's tenant.

CREATE TABLE call_legs (
    client_id         text NOT NULL,
    call_id           text NOT NULL,
    queue_id          text NOT NULL,
    queued_at         timestamptz,
    answered_at       timestamptz,
    answered_by       text,
    abandoned_at      timestamptz,
    completed_at      timestamptz,
    completed_by      text,
    talk_ms           bigint,
    hold_ms           bigint,
    wrap_ms           bigint,
    resolved          boolean,
    transferred       boolean,
    disposition       text,
    sl_ms             integer NOT NULL,
    short_abandon_ms  integer NOT NULL,
    -- The facts the latest write made known (1 queued, 2 answered, 4 abandoned,
    -- 8 completed, 16 answered wait, 32 abandoned wait): read back by the same
    -- statement, so concurrent writers never count a fact twice.
    news              smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, call_id, queue_id)
);

-- dimension 'queue' (key = queue_id), 'agent' (key = agent_id), 'tenant' (key = '').
-- Call counters are kept on queue and agent rows; feedback counters on agent and tenant rows.
CREATE TABLE performance_trends (
    client_id            text NOT NULL,
    dimension            text NOT NULL CHECK (dimension IN ('queue', 'agent', 'tenant')),
    key                  text NOT NULL,
    interval_start       timestamptz NOT NULL,
    offered              integer NOT NULL DEFAULT 0,
    answered             integer NOT NULL DEFAULT 0,
    abandoned            integer NOT NULL DEFAULT 0,
    short_abandoned      integer NOT NULL DEFAULT 0,
    answered_within_sl   integer NOT NULL DEFAULT 0,
    abandoned_within_sl  integer NOT NULL DEFAULT 0,
    handled              integer NOT NULL DEFAULT 0,
    handle_ms            bigint NOT NULL DEFAULT 0,
    talk_ms              bigint NOT NULL DEFAULT 0,
    hold_ms              bigint NOT NULL DEFAULT 0,
    wrap_ms              bigint NOT NULL DEFAULT 0,
    wait_answered_ms     bigint NOT NULL DEFAULT 0,
    wait_abandoned_ms    bigint NOT NULL DEFAULT 0,
    resolved             integer NOT NULL DEFAULT 0,
    resolved_given       integer NOT NULL DEFAULT 0,
    transferred          integer NOT NULL DEFAULT 0,
    csat_n               integer NOT NULL DEFAULT 0,
    csat_sum             integer NOT NULL DEFAULT 0,
    csat_satisfied       integer NOT NULL DEFAULT 0,
    nps_n                integer NOT NULL DEFAULT 0,
    nps_promoters        integer NOT NULL DEFAULT 0,
    nps_detractors       integer NOT NULL DEFAULT 0,
    quality_n            integer NOT NULL DEFAULT 0,
    quality_milli        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, dimension, key, interval_start)
);
CREATE INDEX performance_trends_time ON performance_trends (client_id, dimension, interval_start);

-- The same counters per tenant day (day_starts_at in the tenant's time zone, as of the event):
-- day, week and month queries over whole days read these, 96 times fewer rows.
CREATE TABLE performance_daily (LIKE performance_trends INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE performance_daily DROP COLUMN interval_start, ADD COLUMN day date NOT NULL;
ALTER TABLE performance_daily ADD PRIMARY KEY (client_id, dimension, key, day);
CREATE INDEX performance_daily_time ON performance_daily (client_id, dimension, day);

-- The agents history has seen: the newest name and team (team rollups group agents by it).
CREATE TABLE agents (
    client_id   text NOT NULL,
    agent_id    text NOT NULL,
    name        text,
    team        text,
    seen_at     timestamptz NOT NULL,
    PRIMARY KEY (client_id, agent_id)
);

CREATE TABLE agent_metrics (
    client_id     text NOT NULL,
    call_id       text NOT NULL,
    queue_id      text NOT NULL,
    agent_id      text NOT NULL,
    queued_at     timestamptz,
    answered_at   timestamptz,
    completed_at  timestamptz NOT NULL,
    talk_s        double precision NOT NULL,
    hold_s        double precision NOT NULL,
    wrap_s        double precision NOT NULL,
    handle_s      double precision NOT NULL,
    resolved      boolean,
    transferred   boolean NOT NULL DEFAULT false,
    disposition   text,
    PRIMARY KEY (client_id, call_id, queue_id, completed_at)
) PARTITION BY RANGE (completed_at);
CREATE INDEX agent_metrics_agent ON agent_metrics (client_id, agent_id, completed_at);
CREATE INDEX agent_metrics_time ON agent_metrics (client_id, completed_at);

CREATE TABLE customer_satisfaction (
    client_id     text NOT NULL,
    event_id      text NOT NULL,
    call_id       text,
    agent_id      text,
    csat          smallint CHECK (csat BETWEEN 1 AND 5),
    nps           smallint CHECK (nps BETWEEN 0 AND 10),
    comment       text,
    responded_at  timestamptz NOT NULL,
    PRIMARY KEY (client_id, event_id, responded_at)
) PARTITION BY RANGE (responded_at);
CREATE INDEX customer_satisfaction_time ON customer_satisfaction (client_id, responded_at);

CREATE TABLE call_quality_scores (
    client_id  text NOT NULL,
    score_id   text NOT NULL,
    call_id    text NOT NULL,
    agent_id   text NOT NULL,
    score      numeric(4, 3) NOT NULL CHECK (score BETWEEN 0 AND 5),
    criteria   jsonb,
    reviewer   text,
    source     text NOT NULL CHECK (source IN ('event', 'api')),
    scored_at  timestamptz NOT NULL,
    PRIMARY KEY (client_id, score_id, scored_at)
) PARTITION BY RANGE (scored_at);
CREATE INDEX call_quality_scores_time ON call_quality_scores (client_id, scored_at);

CREATE TABLE cost_analysis (
    client_id        text NOT NULL,
    day              date NOT NULL,
    queue_id         text NOT NULL,
    agent_id         text NOT NULL DEFAULT '',
    handled          integer NOT NULL,
    handle_s         double precision NOT NULL,
    talk_s           double precision NOT NULL,
    agent_cost       numeric(14, 4) NOT NULL,
    telephony_cost   numeric(14, 4) NOT NULL,
    computed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, day, queue_id, agent_id)
);

CREATE TABLE predictive_analytics (
    client_id        text NOT NULL,
    queue_id         text NOT NULL,
    interval_start   timestamptz NOT NULL,
    offered          double precision NOT NULL,
    aht_s            double precision,
    required_agents  integer,
    model            text NOT NULL,
    accuracy         double precision,
    made_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, queue_id, interval_start)
);

CREATE TABLE anomaly_detection (
    client_id       text NOT NULL,
    anomaly_id      bigint GENERATED ALWAYS AS IDENTITY,
    queue_id        text,
    interval_start  timestamptz NOT NULL,
    metric          text NOT NULL,
    observed        double precision,
    expected        double precision,
    score           double precision,
    kind            text NOT NULL CHECK (kind IN ('forecast', 'threshold')),
    raised_at       timestamptz NOT NULL DEFAULT now(),
    cleared_at      timestamptz,
    PRIMARY KEY (client_id, anomaly_id)
);
CREATE INDEX anomaly_detection_time ON anomaly_detection (client_id, interval_start);

CREATE TABLE analytics_audit_log (
    client_id   text NOT NULL,
    entry_id    bigint GENERATED ALWAYS AS IDENTITY,
    at          timestamptz NOT NULL DEFAULT now(),
    sub         text NOT NULL,
    role        text NOT NULL,
    action      text NOT NULL,
    route       text NOT NULL,
    parameters  jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (client_id, entry_id)
);
CREATE INDEX analytics_audit_log_time ON analytics_audit_log (client_id, at);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['call_legs', 'performance_trends', 'performance_daily', 'agents', 'agent_metrics', 'customer_satisfaction',
                             'call_quality_scores', 'cost_analysis', 'predictive_analytics', 'anomaly_detection',
                             'analytics_audit_log'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I '
                       'USING (client_id = current_setting(''wallboard.tenant'', true)) '
                       'WITH CHECK (client_id = current_setting(''wallboard.tenant'', true))', t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE ON call_legs, performance_trends, performance_daily, agents, cost_analysis, predictive_analytics,
    anomaly_detection TO :app_role;
GRANT SELECT, INSERT ON agent_metrics, customer_satisfaction, call_quality_scores, analytics_audit_log TO :app_role;
GRANT DELETE ON predictive_analytics, cost_analysis TO :app_role;

-- Monthly partitions of the history tables for the months of the given days, and
-- the daily event partitions: what a batch of events needs, made if missing.
CREATE FUNCTION ensure_partitions(days date[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    m date;
    t text;
    name text;
    made integer;
BEGIN
    made := ensure_event_partitions(days);
    PERFORM pg_advisory_xact_lock(hashtext('wallboard.history_partitions'));
    FOREACH m IN ARRAY ARRAY(SELECT DISTINCT date_trunc('month', d)::date FROM unnest(days) AS d) LOOP
        FOREACH t IN ARRAY ARRAY['agent_metrics', 'customer_satisfaction', 'call_quality_scores'] LOOP
            name := t || '_' || to_char(m, 'YYYYMM');
            IF to_regclass(name) IS NULL THEN
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', name, t,
                               m::timestamp AT TIME ZONE 'UTC', (m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
                made := made + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN made;
END
$$;
REVOKE ALL ON FUNCTION ensure_partitions(date[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ensure_partitions(date[]) TO :app_role;

SELECT ensure_partitions(ARRAY(SELECT generate_series(current_date - 7, current_date + 7, '1 day')::date));
