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
