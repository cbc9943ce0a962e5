-- A leg keeps at most 64 hold/unhold marks: a leg with more (a flood of holds on one call) takes its hold
-- time from the completion's hold_s, as a leg without marks does, and stores no further marks, so each write
-- of the leg and each recount stays small whatever a connector sends. The live state applies the same rule
-- (apply.lua, HOLD_MARKS). Marks are distinct events (the event_ids table refuses a duplicate), so a leg is
-- over the cap exactly when more than 64 of its hold and unhold events were stored, in whatever order.

CREATE OR REPLACE FUNCTION hold_span_ms(marks jsonb, agent text, done_ms bigint) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    m record;
    total bigint := 0;
    since bigint;
    held boolean := false;
BEGIN
    IF jsonb_array_length(marks) > 64 THEN
        RETURN NULL;
    END IF;
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
