-- Agent-state history: seconds per state, kept at ingest (METRICS.md "Agent state time").
--
-- agent_state_time: milliseconds per tenant × agent × piece × state × reason. A piece is a 15-minute
-- interval of the UTC grid (every UTC offset in use is a multiple of 15 minutes, so it is the tenant's
-- local grid too), split in two where a tenant day starts inside it (a day_starts_at off the grid), so a
-- piece lies in one bucket of every granularity. An agent's state holds from its agent.state ts until its
-- next one (ordered by ts, then event_id); agent_states_store.sql, in the ingest transaction, keeps the
-- closed spans exactly under any delivery order (an event landing between two known ones splits its predecessor's span: the old span
-- is taken off, the two new ones added), agent_states_rebuild.sql recomputes a range from the events.
-- The open last state is not stored: readers count it up to now. logged_out time is not stored.
-- `reason` is '' except for break and other.
CREATE TABLE agent_state_time (
    client_id       text NOT NULL,
    agent_id        text NOT NULL,
    interval_start  timestamptz NOT NULL,
    state           text NOT NULL,
    reason          text NOT NULL DEFAULT '',
    ms              bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, agent_id, interval_start, state, reason)
) WITH (fillfactor = 70);  -- room on the page: a piece's row is updated in place (HOT), its indexes untouched
CREATE INDEX agent_state_time_time ON agent_state_time (client_id, interval_start);

-- Logins (a logged-in state after logged_out, or an agent's first state) and logouts (logged_out after a
-- logged-in state), kept with the spans: first_login and last_logout of a bucket are looked up here.
CREATE TABLE agent_state_marks (
    client_id  text NOT NULL,
    agent_id   text NOT NULL,
    event_id   text NOT NULL,
    at         timestamptz NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('login', 'logout')),
    PRIMARY KEY (client_id, agent_id, event_id)
);
CREATE INDEX agent_state_marks_time ON agent_state_marks (client_id, at);

-- Each agent's latest stored agent.state (its head, ordered by ts, then event_id) on its agents row, and the
-- head before the batch that last moved it (prev_*): events_store.sql sets both in the upsert it already makes
-- of the row, which waits for any batch of the same agent and sees its head. A batch whose events of an agent
-- all follow the previous head splits that agent's spans right there; the others go to agent_states_store.sql.
ALTER TABLE agents ADD COLUMN state_ms bigint, ADD COLUMN state_event_id text, ADD COLUMN state text,
    ADD COLUMN state_reason text, ADD COLUMN prev_ms bigint, ADD COLUMN prev_event_id text, ADD COLUMN prev_state text,
    ADD COLUMN prev_reason text;
ALTER TABLE agents SET (fillfactor = 70);  -- rewritten by nearly every batch of the agent: updated in place (HOT)

-- The pieces of an agent's span [a, b) (epoch ms) in a tenant's calendar: (piece start, ms of the span in it).
-- Used by events_store.sql, agent_states_store.sql and agent_states_rebuild.sql; a SQL function the planner inlines.
CREATE FUNCTION agent_state_pieces(a bigint, b bigint, zone text, day_start integer)
RETURNS TABLE (lo bigint, ms bigint) LANGUAGE sql STABLE AS $$
    SELECT k.lo, least(b, k.hi) - greatest(a, k.lo)
    FROM generate_series(a - a % 900000, b - 1, 900000) AS c(cell)
    CROSS JOIN LATERAL (SELECT CASE WHEN day_start % 15 <> 0
                                     AND ((to_timestamp(c.cell / 1000.0) AT TIME ZONE zone)
                                          - make_interval(mins => day_start))::date
                                      <> ((to_timestamp((c.cell + 899999) / 1000.0) AT TIME ZONE zone)
                                          - make_interval(mins => day_start))::date
                                    THEN c.cell + (day_start % 15) * 60000 END AS cut) AS d
    CROSS JOIN LATERAL (VALUES (c.cell, coalesce(d.cut, c.cell + 900000)), (d.cut, c.cell + 900000)) AS k(lo, hi)
    WHERE k.lo IS NOT NULL AND k.hi > a AND k.lo < b
$$;

-- The call.missed events of an agent in a bucket (the `missed` of GET /api/analytics/agents/states).
CREATE INDEX events_client_agent_missed ON events (client_id, agent_id, ts) WHERE type = 'call.missed';

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['agent_state_time', 'agent_state_marks'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I '
                       'USING (client_id = (SELECT tenant FROM wallboard_tenant_bound)) '
                       'WITH CHECK (client_id = (SELECT tenant FROM wallboard_tenant_bound))', t);
    END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE ON agent_state_time TO :app_role;
GRANT SELECT, INSERT, DELETE ON agent_state_marks TO :app_role;

-- The heads of the agents already stored. Row-level security is forced on events and agents, the owner
-- included: a policy of the owner alone, for this statement only, lets it reach every tenant's rows (as 006
-- does). Their agent_state_time is not filled here: agent_states_rebuild.sql fills a range of a tenant.
DO $$
BEGIN
    EXECUTE format('CREATE POLICY agent_state_backfill ON events FOR SELECT TO %I USING (true)', current_user);
    EXECUTE format('CREATE POLICY agent_state_backfill ON agents FOR ALL TO %I USING (true) WITH CHECK (true)',
                   current_user);
END
$$;
UPDATE agents AS a
SET state_ms = h.ts_ms, state_event_id = h.event_id, state = h.state, state_reason = h.reason
FROM (SELECT DISTINCT ON (client_id, agent_id) client_id, agent_id, round(extract(epoch FROM ts) * 1000)::bigint AS ts_ms,
             event_id, body->>'state' AS state,
             CASE WHEN body->>'state' IN ('break', 'other') THEN coalesce(body->>'reason', '') ELSE '' END AS reason
      FROM events
      WHERE type = 'agent.state' AND agent_id IS NOT NULL
      ORDER BY client_id, agent_id, ts DESC, event_id COLLATE "C" DESC) AS h
WHERE a.client_id = h.client_id AND a.agent_id = h.agent_id;
DROP POLICY agent_state_backfill ON events;
DROP POLICY agent_state_backfill ON agents;
