-- The system of record for ingested events.
--
-- `event_ids` enforces "unique per tenant" across every day partition (a
-- unique index on a partitioned table must contain the partition key, and the
-- same event_id may come back with any ts). `events` holds the events,
-- partitioned by day of `ts`; partitions are made ahead of time and on demand
-- by ensure_event_partitions(), which the application role may call but not
-- imitate (it owns no tables).
CREATE TABLE event_ids (
    client_id  text NOT NULL,
    event_id   text NOT NULL,
    PRIMARY KEY (client_id, event_id)
);

CREATE TABLE events (
    client_id    text NOT NULL,
    event_id     text NOT NULL,
    type         text NOT NULL,
    ts           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    queue_id     text,
    agent_id     text,
    call_id      text,
    body         jsonb NOT NULL
) PARTITION BY RANGE (ts);

CREATE INDEX events_client_ts ON events (client_id, ts);
CREATE INDEX events_client_agent_state ON events (client_id, agent_id, ts) WHERE type = 'agent.state';

ALTER TABLE event_ids ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_ids FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON event_ids
    USING (client_id = current_setting('wallboard.tenant', true))
    WITH CHECK (client_id = current_setting('wallboard.tenant', true));

ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON events
    USING (client_id = current_setting('wallboard.tenant', true))
    WITH CHECK (client_id = current_setting('wallboard.tenant', true));

GRANT SELECT, INSERT ON event_ids, events TO :app_role;

-- Daily partitions for the given UTC days, made if missing.
-- SECURITY DEFINER: runs as the owner, so the application role can extend
-- the table without owning it. Serialised by an advisory transaction lock so
-- that processes racing on the same new day do not collide.
CREATE FUNCTION ensure_event_partitions(days date[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    d date;
    made integer := 0;
    name text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('wallboard.event_partitions'));
    FOREACH d IN ARRAY days LOOP
        name := 'events_' || to_char(d, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                name, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END
$$;
REVOKE ALL ON FUNCTION ensure_event_partitions(date[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ensure_event_partitions(date[]) TO :app_role;

SELECT ensure_event_partitions(ARRAY(SELECT generate_series(current_date - 7, current_date + 7, '1 day')::date));
