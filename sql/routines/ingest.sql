-- A small ingest batch in one round trip: the tenant binding, events_store.sql and the commit in one statement
-- (server/live/recorder.py, Ingestor.store_events). Called on its own, outside any transaction, by the login
-- role: it binds the tenant as Database.tenant's BEGIN does (the application role, wallboard.tenant and its
-- proof, all transaction-local: row-level security checks them as for any tenant transaction), runs the
-- statement, and the statement's implicit transaction commits when it returns. Its result: the event_ids that
-- were new.
--
-- When the statement leaves work to statements of their own (agents whose agent.state events
-- agent_states_store.sql must split, completed legs whose hold time agent_metrics_holds.sql corrects, marks
-- agent_states_unmark.sql deletes), the routine raises SQLSTATE WB001 and everything it did is rolled back: the
-- caller stores the batch again in a transaction of its own, step by step (rare: a late event, an agent's first).
--
-- The statement runs without the families of CTEs the batch has no events of (events_store.sql, `-- family:`): a
-- lone agent.state event skips the legs, feedback, activity and every rollup, a batch of calls the agent states,
-- a batch without CSAT or quality scores those two. The type lists below are the ones those CTEs read. Each version
-- has a loop of its own: one cursor opened for whichever ran (OPEN … FOR, then FETCH) cost 70-100 µs more of
-- PostgreSQL's CPU per one-event batch.
--
-- The statement runs with its generic plan from the first call on (the plan PostgreSQL settles on after five
-- custom ones; planning one costs 4-5 ms, so a connection's first calls cost 20-25 ms more without this) and
-- without JIT (compiling costs far more than running it), both for this transaction only.
--
-- $1..$13 are events_store.sql's; $14 the application role, $15 the tenant's proof (server/core/db_roles.py).
CREATE FUNCTION :routine(text, text[], text[], bigint[], text[], text[], text[], text[], integer[], integer[], text,
                         integer, bigint, text, text)
    RETURNS TABLE (event_id text)
    LANGUAGE plpgsql AS $routine$
#variable_conflict use_column
DECLARE
    out_row record;
    steps boolean := false;  -- a row asks for statements of their own (slow_agent, held_call, unmarked_event)
BEGIN
    PERFORM set_config('role', $14, true), set_config('wallboard.tenant', $1, true),
            set_config('wallboard.tenant_proof', $15, true),
            set_config('plan_cache_mode', 'force_generic_plan', true), set_config('jit', 'off', true);
    IF $3 <@ ARRAY['agent.state'] THEN
        FOR out_row IN
-- include: queries/events_store.sql without calls
        LOOP
            steps := steps OR out_row.slow_agent IS NOT NULL OR out_row.held_call IS NOT NULL
                     OR out_row.unmarked_event IS NOT NULL;
            event_id := out_row.event_id;
            RETURN NEXT;
        END LOOP;
    ELSIF NOT $3 && ARRAY['agent.state', 'csat.response', 'quality.scored'] THEN
        FOR out_row IN
-- include: queries/events_store.sql without state feedback
        LOOP
            steps := steps OR out_row.slow_agent IS NOT NULL OR out_row.held_call IS NOT NULL
                     OR out_row.unmarked_event IS NOT NULL;
            event_id := out_row.event_id;
            RETURN NEXT;
        END LOOP;
    ELSIF NOT $3 && ARRAY['csat.response', 'quality.scored'] THEN
        FOR out_row IN
-- include: queries/events_store.sql without feedback
        LOOP
            steps := steps OR out_row.slow_agent IS NOT NULL OR out_row.held_call IS NOT NULL
                     OR out_row.unmarked_event IS NOT NULL;
            event_id := out_row.event_id;
            RETURN NEXT;
        END LOOP;
    ELSE
        FOR out_row IN
-- include: queries/events_store.sql
        LOOP
            steps := steps OR out_row.slow_agent IS NOT NULL OR out_row.held_call IS NOT NULL
                     OR out_row.unmarked_event IS NOT NULL;
            event_id := out_row.event_id;
            RETURN NEXT;
        END LOOP;
    END IF;
    IF steps THEN
        RAISE EXCEPTION 'the batch needs statements of its own: store it in a transaction' USING ERRCODE = 'WB001';
    END IF;
END
$routine$;
REVOKE ALL ON FUNCTION :routine FROM PUBLIC;
GRANT EXECUTE ON FUNCTION :routine TO :app_role;
