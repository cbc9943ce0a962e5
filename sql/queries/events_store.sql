-- Store a batch of events and apply the new ones to the history tables: one statement, one
-- round trip, in the ingest transaction. Returns the event_ids that were new (the others were
-- stored already: duplicates, which touch nothing), then (as slow_agent) the agents whose new agent.state
-- events agent_states_store.sql must split, in a statement of its own (their other agents' are split here),
-- then (as held_call, held_queue) the completed legs whose hold time a late hold or unhold changed, whose
-- per-call record agent_metrics_holds.sql corrects (rarely: a statement of its own), then (as unmarked_agent,
-- unmarked_event) the login or logout marks agent_states_unmark.sql deletes (rarely: a statement of its own).
-- $1 tenant; $2..$10 parallel arrays, one element per event (ts as epoch ms; sl/sa: the queue's
-- service-level and short-abandon thresholds in ms); $11 the tenant's time zone, $12 its day
-- start in minutes after midnight.
--
-- Legs first (one upsert; `news` says which facts this write made known), then every rollup
-- row the new facts move, summed and written once, in key order (no deadlock between batches):
-- per 15-minute interval (performance_trends), per tenant day (performance_daily) and per tenant month
-- (performance_monthly).
-- The lines between `-- counters: …` and `-- end counters` are written from server/ingest/schema.py by
-- `python -m server.ingest.schema_sql`: edit the declaration, not them.
-- The lines between `-- family: NAME` and `-- end family` are the CTEs (and result rows) of one family of event
-- types: the ingest routine (sql/routines/ingest.sql) runs the statement without the families a batch has no
-- events of. Such a family's CTEs read none of the batch's events and write nothing, but PostgreSQL sets up every
-- CTE of a statement at each execution.
WITH input AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[],
                         $9::integer[], $10::integer[])
        AS t(event_id, type, ts_ms, queue_id, agent_id, call_id, body, sl_ms, sa_ms)
), fresh AS (
    INSERT INTO event_ids (client_id, event_id)
    SELECT $1, event_id FROM input
    ON CONFLICT DO NOTHING
    RETURNING event_id
), e AS MATERIALIZED (  -- the new events only, each body parsed once (doc)
    SELECT i.event_id, i.type, i.ts_ms, i.queue_id, i.agent_id, i.call_id, i.body::jsonb AS doc, i.sl_ms, i.sa_ms
    FROM input i JOIN fresh f USING (event_id)
), stored AS (
    INSERT INTO events (client_id, event_id, type, ts, queue_id, agent_id, call_id, body)
    SELECT $1, event_id, type, to_timestamp(ts_ms / 1000.0), queue_id, agent_id, call_id, doc FROM e
    RETURNING event_id
), pending AS (  -- the batch's pending-apply marker (server/live/heal.py), when it has one
    INSERT INTO live_pending (client_id, batch) SELECT $1, $13::bigint WHERE $13::bigint IS NOT NULL
-- family: calls (legs, feedback, activity and the rollups: every event but agent.state)
), legs_in AS (
    SELECT call_id, queue_id,
           to_timestamp(min(ts_ms) FILTER (WHERE type = 'call.queued') / 1000.0) AS queued_at,
           to_timestamp(min(ts_ms) FILTER (WHERE type = 'call.answered') / 1000.0) AS answered_at,
           (array_agg(agent_id ORDER BY ts_ms, event_id) FILTER (WHERE type = 'call.answered'))[1] AS answered_by,
           to_timestamp(min(ts_ms) FILTER (WHERE type = 'call.abandoned') / 1000.0) AS abandoned_at,
           to_timestamp(min(ts_ms) FILTER (WHERE type = 'call.completed') / 1000.0) AS completed_at,
           (array_agg(agent_id ORDER BY ts_ms, event_id) FILTER (WHERE type = 'call.completed'))[1] AS completed_by,
           (array_agg(doc ORDER BY ts_ms, event_id) FILTER (WHERE type = 'call.completed'))[1] AS done,
           -- hold and unhold events that name the queue: the leg's hold spans (015_hold_spans.sql)
           jsonb_agg(jsonb_build_array(ts_ms, (type = 'call.hold')::int, agent_id, event_id))
               FILTER (WHERE type IN ('call.hold', 'call.unhold')) AS holds,
           max(sl_ms) AS sl_ms, max(sa_ms) AS sa_ms
    FROM e
    WHERE type IN ('call.queued', 'call.answered', 'call.abandoned', 'call.completed')
       OR type IN ('call.hold', 'call.unhold') AND queue_id IS NOT NULL
    GROUP BY call_id, queue_id
), legs AS (
    INSERT INTO call_legs AS l (client_id, call_id, queue_id, queued_at, answered_at, answered_by, abandoned_at,
                                completed_at, completed_by, talk_ms, hold_ms, wrap_ms, resolved, transferred,
                                disposition, revenue_cents, sl_ms, short_abandon_ms, news, holds, reported_hold_ms)
    SELECT $1, call_id, queue_id, queued_at, answered_at, answered_by, abandoned_at, completed_at, completed_by,
           round((done->>'talk_s')::float8 * 1000)::bigint,
           CASE WHEN holds IS NULL OR completed_at IS NULL THEN round((done->>'hold_s')::float8 * 1000)::bigint
                ELSE leg_hold_ms(holds, completed_by, completed_at, round((done->>'hold_s')::float8 * 1000)::bigint)
           END,
           round((done->>'wrap_s')::float8 * 1000)::bigint, (done->>'resolved')::boolean,
           coalesce((done->>'transferred')::boolean, false), done->>'disposition',
           round((done->>'revenue')::numeric * 100)::bigint, sl_ms, sa_ms,
           (CASE WHEN queued_at IS NOT NULL THEN 1 ELSE 0 END)
           | (CASE WHEN answered_at IS NOT NULL THEN 2 ELSE 0 END)
           | (CASE WHEN abandoned_at IS NOT NULL THEN 4 ELSE 0 END)
           | (CASE WHEN completed_at IS NOT NULL THEN 8 ELSE 0 END)
           | (CASE WHEN queued_at IS NOT NULL AND answered_at IS NOT NULL THEN 16 ELSE 0 END)
           | (CASE WHEN queued_at IS NOT NULL AND abandoned_at IS NOT NULL THEN 32 ELSE 0 END),
           holds, round((done->>'hold_s')::float8 * 1000)::bigint
    FROM legs_in
    ORDER BY call_id, queue_id
    ON CONFLICT (client_id, call_id, queue_id) DO UPDATE SET
        queued_at = coalesce(l.queued_at, excluded.queued_at),
        answered_at = coalesce(l.answered_at, excluded.answered_at),
        answered_by = CASE WHEN l.answered_at IS NULL THEN excluded.answered_by ELSE l.answered_by END,
        abandoned_at = coalesce(l.abandoned_at, excluded.abandoned_at),
        completed_at = coalesce(l.completed_at, excluded.completed_at),
        completed_by = CASE WHEN l.completed_at IS NULL THEN excluded.completed_by ELSE l.completed_by END,
        talk_ms = CASE WHEN l.completed_at IS NULL THEN excluded.talk_ms ELSE l.talk_ms END,
        -- A leg with hold events takes its hold time from their spans, recounted when one comes in late; the
        -- change to a leg completed before goes to hold_news (the rollups of its completion take it).
        hold_ms = CASE WHEN l.holds IS NULL AND excluded.holds IS NULL
                       THEN CASE WHEN l.completed_at IS NULL THEN excluded.hold_ms ELSE l.hold_ms END
                       WHEN l.completed_at IS NULL AND excluded.completed_at IS NULL THEN NULL
                       ELSE leg_hold_ms(coalesce(l.holds || excluded.holds, l.holds, excluded.holds),
                                        CASE WHEN l.completed_at IS NULL THEN excluded.completed_by
                                             ELSE l.completed_by END,
                                        coalesce(l.completed_at, excluded.completed_at),
                                        CASE WHEN l.completed_at IS NULL THEN excluded.reported_hold_ms
                                             ELSE coalesce(l.reported_hold_ms, l.hold_ms) END) END,
        hold_news = CASE WHEN l.completed_at IS NULL OR excluded.holds IS NULL THEN 0
                         ELSE leg_hold_ms(coalesce(l.holds || excluded.holds, excluded.holds), l.completed_by,
                                          l.completed_at, coalesce(l.reported_hold_ms, l.hold_ms)) - l.hold_ms END,
        holds = CASE WHEN jsonb_array_length(l.holds) > 64 THEN l.holds  -- over the cap: 016_hold_marks_cap.sql
                     ELSE coalesce(l.holds || excluded.holds, l.holds, excluded.holds) END,
        reported_hold_ms = CASE WHEN l.completed_at IS NULL THEN excluded.reported_hold_ms
                                ELSE l.reported_hold_ms END,
        wrap_ms = CASE WHEN l.completed_at IS NULL THEN excluded.wrap_ms ELSE l.wrap_ms END,
        resolved = CASE WHEN l.completed_at IS NULL THEN excluded.resolved ELSE l.resolved END,
        transferred = CASE WHEN l.completed_at IS NULL THEN excluded.transferred ELSE l.transferred END,
        disposition = CASE WHEN l.completed_at IS NULL THEN excluded.disposition ELSE l.disposition END,
        revenue_cents = CASE WHEN l.completed_at IS NULL THEN excluded.revenue_cents ELSE l.revenue_cents END,
        -- The thresholds a wait was counted with stay with the leg (a rebuild counts it the same way).
        sl_ms = CASE WHEN l.queued_at IS NULL OR (l.answered_at IS NULL AND l.abandoned_at IS NULL)
                     THEN excluded.sl_ms ELSE l.sl_ms END,
        short_abandon_ms = CASE WHEN l.queued_at IS NULL OR (l.answered_at IS NULL AND l.abandoned_at IS NULL)
                                THEN excluded.short_abandon_ms ELSE l.short_abandon_ms END,
        news = (CASE WHEN l.queued_at IS NULL AND excluded.queued_at IS NOT NULL THEN 1 ELSE 0 END)
             | (CASE WHEN l.answered_at IS NULL AND excluded.answered_at IS NOT NULL THEN 2 ELSE 0 END)
             | (CASE WHEN l.abandoned_at IS NULL AND excluded.abandoned_at IS NOT NULL THEN 4 ELSE 0 END)
             | (CASE WHEN l.completed_at IS NULL AND excluded.completed_at IS NOT NULL THEN 8 ELSE 0 END)
             | (CASE WHEN (l.queued_at IS NULL OR l.answered_at IS NULL)
                      AND coalesce(l.queued_at, excluded.queued_at) IS NOT NULL
                      AND coalesce(l.answered_at, excluded.answered_at) IS NOT NULL THEN 16 ELSE 0 END)
             | (CASE WHEN (l.queued_at IS NULL OR l.abandoned_at IS NULL)
                      AND coalesce(l.queued_at, excluded.queued_at) IS NOT NULL
                      AND coalesce(l.abandoned_at, excluded.abandoned_at) IS NOT NULL THEN 32 ELSE 0 END)
    RETURNING l.*
), waits AS (
    SELECT legs.*,
           greatest(0, round(extract(epoch FROM answered_at - queued_at) * 1000))::bigint AS wait_a,
           greatest(0, round(extract(epoch FROM abandoned_at - queued_at) * 1000))::bigint AS wait_b
    FROM legs
-- family: feedback (csat.response, quality.scored)
), feedback AS (
    SELECT to_timestamp(ts_ms / 1000.0) AS at, agent_id,
           CASE WHEN type = 'csat.response' THEN (doc->>'csat')::integer END AS csat,
           CASE WHEN type = 'csat.response' THEN (doc->>'nps')::integer END AS nps,
           CASE WHEN type = 'quality.scored' THEN round((doc->>'score')::numeric * 1000)::bigint END AS quality
    FROM e
    WHERE type IN ('csat.response', 'quality.scored')
-- end family
), activity AS (  -- rings, misses, holds and callbacks: each new event is its own fact
    SELECT to_timestamp(ts_ms / 1000.0) AS at, type, queue_id, agent_id,
           coalesce(round((doc->>'ring_s')::float8 * 1000)::bigint, 0) AS ring_ms, doc->>'outcome' AS outcome
    FROM e
    WHERE type IN ('call.offered', 'call.missed', 'call.hold', 'callback.requested', 'callback.completed')
), facts (dimension, key, at,
          -- counters: names
          offered, answered, abandoned, short_abandoned, answered_within_sl, abandoned_within_sl, handled,
          handle_ms, talk_ms, hold_ms, wrap_ms, wait_answered_ms, wait_abandoned_ms, resolved, resolved_given,
          transferred, csat_n, csat_sum, csat_satisfied, nps_n, nps_promoters, nps_detractors, quality_n,
          quality_milli, rings, missed, missed_ring_ms, holds, callbacks_requested, callbacks_completed,
          callbacks_reached, revenue_cents, converted
          -- end counters
      ) AS (
    -- offered, on the queued ts
    SELECT 'queue', queue_id, queued_at,
           -- counters: store queued
           1, 0, 0, 0, 0, 0, 0, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0, 0, 0, 0, 0, 0,
           0, 0, 0, 0, 0::bigint, 0, 0, 0::bigint, 0, 0, 0, 0, 0::bigint, 0
           -- end counters
    FROM waits WHERE news & 1 <> 0
    UNION ALL  -- answered (and its wait once both ends are known), on the answered ts
    SELECT 'queue', queue_id, answered_at,
           -- counters: store answered
           0, (news & 2 <> 0)::int, 0, 0, (news & 16 <> 0 AND wait_a <= sl_ms)::int, 0, 0, 0::bigint, 0::bigint,
           0::bigint, 0::bigint, CASE WHEN news & 16 <> 0 THEN wait_a ELSE 0 END, 0::bigint, 0, 0, 0, 0, 0, 0, 0, 0,
           0, 0, 0::bigint, 0, 0, 0::bigint, 0, 0, 0, 0, 0::bigint, 0
           -- end counters
    FROM waits WHERE news & (2 | 16) <> 0
    UNION ALL
    SELECT 'agent', answered_by, answered_at,
           -- counters: store answered
           0, (news & 2 <> 0)::int, 0, 0, (news & 16 <> 0 AND wait_a <= sl_ms)::int, 0, 0, 0::bigint, 0::bigint,
           0::bigint, 0::bigint, CASE WHEN news & 16 <> 0 THEN wait_a ELSE 0 END, 0::bigint, 0, 0, 0, 0, 0, 0, 0, 0,
           0, 0, 0::bigint, 0, 0, 0::bigint, 0, 0, 0, 0, 0::bigint, 0
           -- end counters
    FROM waits WHERE news & (2 | 16) <> 0 AND answered_by IS NOT NULL
    UNION ALL  -- abandoned (and its wait), on the abandoned ts
    SELECT 'queue', queue_id, abandoned_at,
           -- counters: store abandoned
           0, 0, (news & 4 <> 0)::int, (news & 32 <> 0 AND wait_b < short_abandon_ms)::int, 0,
           (news & 32 <> 0 AND wait_b <= sl_ms)::int, 0, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint,
           CASE WHEN news & 32 <> 0 THEN wait_b ELSE 0 END, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0::bigint, 0, 0,
           0::bigint, 0, 0, 0, 0, 0::bigint, 0
           -- end counters
    FROM waits WHERE news & (4 | 32) <> 0
    UNION ALL  -- handled, on the completed ts, for the queue and the agent who completed it
    SELECT 'queue', queue_id, completed_at,
           -- counters: store completed
           0, 0, 0, 0, 0, 0, 1, talk_ms + hold_ms + wrap_ms, talk_ms, hold_ms, wrap_ms, 0::bigint, 0::bigint,
           coalesce(resolved::int, 0), (resolved IS NOT NULL)::int, transferred::int, 0, 0, 0, 0, 0, 0, 0,
           0::bigint, 0, 0, 0::bigint, 0, 0, 0, 0, coalesce(revenue_cents, 0),
           coalesce(revenue_cents >= 1, false)::int
           -- end counters
    FROM waits WHERE news & 8 <> 0
    UNION ALL
    SELECT 'agent', completed_by, completed_at,
           -- counters: store completed
           0, 0, 0, 0, 0, 0, 1, talk_ms + hold_ms + wrap_ms, talk_ms, hold_ms, wrap_ms, 0::bigint, 0::bigint,
           coalesce(resolved::int, 0), (resolved IS NOT NULL)::int, transferred::int, 0, 0, 0, 0, 0, 0, 0,
           0::bigint, 0, 0, 0::bigint, 0, 0, 0, 0, coalesce(revenue_cents, 0),
           coalesce(revenue_cents >= 1, false)::int
           -- end counters
    FROM waits WHERE news & 8 <> 0 AND completed_by IS NOT NULL
    UNION ALL  -- a hold or unhold after its leg's completion: the change of its hold time, on the completed ts
    SELECT 'queue', queue_id, completed_at,
           -- counters: store hold_change
           0, 0, 0, 0, 0, 0, 0, hold_news, 0::bigint, hold_news, 0::bigint, 0::bigint, 0::bigint, 0, 0, 0, 0, 0, 0,
           0, 0, 0, 0, 0::bigint, 0, 0, 0::bigint, 0, 0, 0, 0, 0::bigint, 0
           -- end counters
    FROM waits WHERE news & 8 = 0 AND hold_news <> 0
    UNION ALL
    SELECT 'agent', completed_by, completed_at,
           -- counters: store hold_change
           0, 0, 0, 0, 0, 0, 0, hold_news, 0::bigint, hold_news, 0::bigint, 0::bigint, 0::bigint, 0, 0, 0, 0, 0, 0,
           0, 0, 0, 0, 0::bigint, 0, 0, 0::bigint, 0, 0, 0, 0, 0::bigint, 0
           -- end counters
    FROM waits WHERE news & 8 = 0 AND hold_news <> 0 AND completed_by IS NOT NULL
    -- family: feedback
    UNION ALL  -- CSAT, NPS and quality, for the tenant and the agent when one is named
    SELECT 'tenant', '', at,
           -- counters: store feedback
           0, 0, 0, 0, 0, 0, 0, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0, 0, 0,
           (csat IS NOT NULL)::int, coalesce(csat, 0), coalesce(csat >= 4, false)::int, (nps IS NOT NULL)::int,
           coalesce(nps >= 9, false)::int, coalesce(nps <= 6, false)::int, (quality IS NOT NULL)::int,
           coalesce(quality, 0), 0, 0, 0::bigint, 0, 0, 0, 0, 0::bigint, 0
           -- end counters
    FROM feedback
    UNION ALL
    SELECT 'agent', agent_id, at,
           -- counters: store feedback
           0, 0, 0, 0, 0, 0, 0, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0, 0, 0,
           (csat IS NOT NULL)::int, coalesce(csat, 0), coalesce(csat >= 4, false)::int, (nps IS NOT NULL)::int,
           coalesce(nps >= 9, false)::int, coalesce(nps <= 6, false)::int, (quality IS NOT NULL)::int,
           coalesce(quality, 0), 0, 0, 0::bigint, 0, 0, 0, 0, 0::bigint, 0
           -- end counters
    FROM feedback WHERE agent_id IS NOT NULL
    -- end family
    UNION ALL  -- rings, misses, holds and callbacks, for the queue and the agent the event names
    SELECT 'queue', queue_id, at,
           -- counters: store activity
           0, 0, 0, 0, 0, 0, 0, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0, 0, 0, 0, 0, 0,
           0, 0, 0, 0, 0::bigint, (type = 'call.offered')::int, (type = 'call.missed')::int,
           CASE WHEN type = 'call.missed' THEN ring_ms ELSE 0 END, (type = 'call.hold')::int,
           (type = 'callback.requested')::int, (type = 'callback.completed')::int,
           (type = 'callback.completed' AND outcome = 'reached')::int, 0::bigint, 0
           -- end counters
    FROM activity WHERE queue_id IS NOT NULL
    UNION ALL
    SELECT 'agent', agent_id, at,
           -- counters: store activity
           0, 0, 0, 0, 0, 0, 0, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0, 0, 0, 0, 0, 0,
           0, 0, 0, 0, 0::bigint, (type = 'call.offered')::int, (type = 'call.missed')::int,
           CASE WHEN type = 'call.missed' THEN ring_ms ELSE 0 END, (type = 'call.hold')::int,
           (type = 'callback.requested')::int, (type = 'callback.completed')::int,
           (type = 'callback.completed' AND outcome = 'reached')::int, 0::bigint, 0
           -- end counters
    FROM activity WHERE agent_id IS NOT NULL
), rolled AS (
    INSERT INTO performance_trends AS p (client_id, dimension, key, interval_start,
        -- counters: names
        offered, answered, abandoned, short_abandoned, answered_within_sl, abandoned_within_sl, handled, handle_ms,
        talk_ms, hold_ms, wrap_ms, wait_answered_ms, wait_abandoned_ms, resolved, resolved_given, transferred,
        csat_n, csat_sum, csat_satisfied, nps_n, nps_promoters, nps_detractors, quality_n, quality_milli, rings,
        missed, missed_ring_ms, holds, callbacks_requested, callbacks_completed, callbacks_reached, revenue_cents,
        converted
        -- end counters
    )
    SELECT $1, dimension, key, date_bin('15 minutes', at, timestamptz '2000-01-01 00:00Z'),
           -- counters: typed
           sum(offered)::integer, sum(answered)::integer, sum(abandoned)::integer, sum(short_abandoned)::integer,
           sum(answered_within_sl)::integer, sum(abandoned_within_sl)::integer, sum(handled)::integer,
           sum(handle_ms)::bigint, sum(talk_ms)::bigint, sum(hold_ms)::bigint, sum(wrap_ms)::bigint,
           sum(wait_answered_ms)::bigint, sum(wait_abandoned_ms)::bigint, sum(resolved)::integer,
           sum(resolved_given)::integer, sum(transferred)::integer, sum(csat_n)::integer, sum(csat_sum)::integer,
           sum(csat_satisfied)::integer, sum(nps_n)::integer, sum(nps_promoters)::integer,
           sum(nps_detractors)::integer, sum(quality_n)::integer, sum(quality_milli)::bigint, sum(rings)::integer,
           sum(missed)::integer, sum(missed_ring_ms)::bigint, sum(holds)::integer,
           sum(callbacks_requested)::integer, sum(callbacks_completed)::integer, sum(callbacks_reached)::integer,
           sum(revenue_cents)::bigint, sum(converted)::integer
           -- end counters
    FROM facts
    GROUP BY 2, 3, 4
    ORDER BY 2, 3, 4
    ON CONFLICT (client_id, dimension, key, interval_start) DO UPDATE SET
        -- counters: add
        offered = p.offered + excluded.offered,
        answered = p.answered + excluded.answered,
        abandoned = p.abandoned + excluded.abandoned,
        short_abandoned = p.short_abandoned + excluded.short_abandoned,
        answered_within_sl = p.answered_within_sl + excluded.answered_within_sl,
        abandoned_within_sl = p.abandoned_within_sl + excluded.abandoned_within_sl,
        handled = p.handled + excluded.handled,
        handle_ms = p.handle_ms + excluded.handle_ms,
        talk_ms = p.talk_ms + excluded.talk_ms,
        hold_ms = p.hold_ms + excluded.hold_ms,
        wrap_ms = p.wrap_ms + excluded.wrap_ms,
        wait_answered_ms = p.wait_answered_ms + excluded.wait_answered_ms,
        wait_abandoned_ms = p.wait_abandoned_ms + excluded.wait_abandoned_ms,
        resolved = p.resolved + excluded.resolved,
        resolved_given = p.resolved_given + excluded.resolved_given,
        transferred = p.transferred + excluded.transferred,
        csat_n = p.csat_n + excluded.csat_n,
        csat_sum = p.csat_sum + excluded.csat_sum,
        csat_satisfied = p.csat_satisfied + excluded.csat_satisfied,
        nps_n = p.nps_n + excluded.nps_n,
        nps_promoters = p.nps_promoters + excluded.nps_promoters,
        nps_detractors = p.nps_detractors + excluded.nps_detractors,
        quality_n = p.quality_n + excluded.quality_n,
        quality_milli = p.quality_milli + excluded.quality_milli,
        rings = p.rings + excluded.rings,
        missed = p.missed + excluded.missed,
        missed_ring_ms = p.missed_ring_ms + excluded.missed_ring_ms,
        holds = p.holds + excluded.holds,
        callbacks_requested = p.callbacks_requested + excluded.callbacks_requested,
        callbacks_completed = p.callbacks_completed + excluded.callbacks_completed,
        callbacks_reached = p.callbacks_reached + excluded.callbacks_reached,
        revenue_cents = p.revenue_cents + excluded.revenue_cents,
        converted = p.converted + excluded.converted
        -- end counters
), per_day AS MATERIALIZED (  -- the new facts per tenant day, once for the daily and the monthly rows
    SELECT dimension, key, ((at AT TIME ZONE $11) - make_interval(mins => $12))::date AS day,
           -- counters: typed as
           sum(offered)::integer AS offered, sum(answered)::integer AS answered,
           sum(abandoned)::integer AS abandoned, sum(short_abandoned)::integer AS short_abandoned,
           sum(answered_within_sl)::integer AS answered_within_sl,
           sum(abandoned_within_sl)::integer AS abandoned_within_sl, sum(handled)::integer AS handled,
           sum(handle_ms)::bigint AS handle_ms, sum(talk_ms)::bigint AS talk_ms, sum(hold_ms)::bigint AS hold_ms,
           sum(wrap_ms)::bigint AS wrap_ms, sum(wait_answered_ms)::bigint AS wait_answered_ms,
           sum(wait_abandoned_ms)::bigint AS wait_abandoned_ms, sum(resolved)::integer AS resolved,
           sum(resolved_given)::integer AS resolved_given, sum(transferred)::integer AS transferred,
           sum(csat_n)::integer AS csat_n, sum(csat_sum)::integer AS csat_sum,
           sum(csat_satisfied)::integer AS csat_satisfied, sum(nps_n)::integer AS nps_n,
           sum(nps_promoters)::integer AS nps_promoters, sum(nps_detractors)::integer AS nps_detractors,
           sum(quality_n)::integer AS quality_n, sum(quality_milli)::bigint AS quality_milli,
           sum(rings)::integer AS rings, sum(missed)::integer AS missed,
           sum(missed_ring_ms)::bigint AS missed_ring_ms, sum(holds)::integer AS holds,
           sum(callbacks_requested)::integer AS callbacks_requested,
           sum(callbacks_completed)::integer AS callbacks_completed,
           sum(callbacks_reached)::integer AS callbacks_reached, sum(revenue_cents)::bigint AS revenue_cents,
           sum(converted)::integer AS converted
           -- end counters
    FROM facts
    GROUP BY 1, 2, 3
), daily AS (
    INSERT INTO performance_daily AS p (client_id, dimension, key, day,
        -- counters: names
        offered, answered, abandoned, short_abandoned, answered_within_sl, abandoned_within_sl, handled, handle_ms,
        talk_ms, hold_ms, wrap_ms, wait_answered_ms, wait_abandoned_ms, resolved, resolved_given, transferred,
        csat_n, csat_sum, csat_satisfied, nps_n, nps_promoters, nps_detractors, quality_n, quality_milli, rings,
        missed, missed_ring_ms, holds, callbacks_requested, callbacks_completed, callbacks_reached, revenue_cents,
        converted
        -- end counters
    )
    SELECT $1, dimension, key, day,
           -- counters: names
           offered, answered, abandoned, short_abandoned, answered_within_sl, abandoned_within_sl, handled,
           handle_ms, talk_ms, hold_ms, wrap_ms, wait_answered_ms, wait_abandoned_ms, resolved, resolved_given,
           transferred, csat_n, csat_sum, csat_satisfied, nps_n, nps_promoters, nps_detractors, quality_n,
           quality_milli, rings, missed, missed_ring_ms, holds, callbacks_requested, callbacks_completed,
           callbacks_reached, revenue_cents, converted
           -- end counters
    FROM per_day
    ORDER BY 2, 3, 4
    ON CONFLICT (client_id, dimension, key, day) DO UPDATE SET
        -- counters: add
        offered = p.offered + excluded.offered,
        answered = p.answered + excluded.answered,
        abandoned = p.abandoned + excluded.abandoned,
        short_abandoned = p.short_abandoned + excluded.short_abandoned,
        answered_within_sl = p.answered_within_sl + excluded.answered_within_sl,
        abandoned_within_sl = p.abandoned_within_sl + excluded.abandoned_within_sl,
        handled = p.handled + excluded.handled,
        handle_ms = p.handle_ms + excluded.handle_ms,
        talk_ms = p.talk_ms + excluded.talk_ms,
        hold_ms = p.hold_ms + excluded.hold_ms,
        wrap_ms = p.wrap_ms + excluded.wrap_ms,
        wait_answered_ms = p.wait_answered_ms + excluded.wait_answered_ms,
        wait_abandoned_ms = p.wait_abandoned_ms + excluded.wait_abandoned_ms,
        resolved = p.resolved + excluded.resolved,
        resolved_given = p.resolved_given + excluded.resolved_given,
        transferred = p.transferred + excluded.transferred,
        csat_n = p.csat_n + excluded.csat_n,
        csat_sum = p.csat_sum + excluded.csat_sum,
        csat_satisfied = p.csat_satisfied + excluded.csat_satisfied,
        nps_n = p.nps_n + excluded.nps_n,
        nps_promoters = p.nps_promoters + excluded.nps_promoters,
        nps_detractors = p.nps_detractors + excluded.nps_detractors,
        quality_n = p.quality_n + excluded.quality_n,
        quality_milli = p.quality_milli + excluded.quality_milli,
        rings = p.rings + excluded.rings,
        missed = p.missed + excluded.missed,
        missed_ring_ms = p.missed_ring_ms + excluded.missed_ring_ms,
        holds = p.holds + excluded.holds,
        callbacks_requested = p.callbacks_requested + excluded.callbacks_requested,
        callbacks_completed = p.callbacks_completed + excluded.callbacks_completed,
        callbacks_reached = p.callbacks_reached + excluded.callbacks_reached,
        revenue_cents = p.revenue_cents + excluded.revenue_cents,
        converted = p.converted + excluded.converted
        -- end counters
), monthly AS (  -- the same per tenant month (keyed by its first day)
    INSERT INTO performance_monthly AS p (client_id, dimension, key, month,
        -- counters: names
        offered, answered, abandoned, short_abandoned, answered_within_sl, abandoned_within_sl, handled, handle_ms,
        talk_ms, hold_ms, wrap_ms, wait_answered_ms, wait_abandoned_ms, resolved, resolved_given, transferred,
        csat_n, csat_sum, csat_satisfied, nps_n, nps_promoters, nps_detractors, quality_n, quality_milli, rings,
        missed, missed_ring_ms, holds, callbacks_requested, callbacks_completed, callbacks_reached, revenue_cents,
        converted
        -- end counters
    )
    SELECT $1, dimension, key, date_trunc('month', day)::date,
           -- counters: typed
           sum(offered)::integer, sum(answered)::integer, sum(abandoned)::integer, sum(short_abandoned)::integer,
           sum(answered_within_sl)::integer, sum(abandoned_within_sl)::integer, sum(handled)::integer,
           sum(handle_ms)::bigint, sum(talk_ms)::bigint, sum(hold_ms)::bigint, sum(wrap_ms)::bigint,
           sum(wait_answered_ms)::bigint, sum(wait_abandoned_ms)::bigint, sum(resolved)::integer,
           sum(resolved_given)::integer, sum(transferred)::integer, sum(csat_n)::integer, sum(csat_sum)::integer,
           sum(csat_satisfied)::integer, sum(nps_n)::integer, sum(nps_promoters)::integer,
           sum(nps_detractors)::integer, sum(quality_n)::integer, sum(quality_milli)::bigint, sum(rings)::integer,
           sum(missed)::integer, sum(missed_ring_ms)::bigint, sum(holds)::integer,
           sum(callbacks_requested)::integer, sum(callbacks_completed)::integer, sum(callbacks_reached)::integer,
           sum(revenue_cents)::bigint, sum(converted)::integer
           -- end counters
    FROM per_day
    GROUP BY 2, 3, 4
    ORDER BY 2, 3, 4
    ON CONFLICT (client_id, dimension, key, month) DO UPDATE SET
        -- counters: add
        offered = p.offered + excluded.offered,
        answered = p.answered + excluded.answered,
        abandoned = p.abandoned + excluded.abandoned,
        short_abandoned = p.short_abandoned + excluded.short_abandoned,
        answered_within_sl = p.answered_within_sl + excluded.answered_within_sl,
        abandoned_within_sl = p.abandoned_within_sl + excluded.abandoned_within_sl,
        handled = p.handled + excluded.handled,
        handle_ms = p.handle_ms + excluded.handle_ms,
        talk_ms = p.talk_ms + excluded.talk_ms,
        hold_ms = p.hold_ms + excluded.hold_ms,
        wrap_ms = p.wrap_ms + excluded.wrap_ms,
        wait_answered_ms = p.wait_answered_ms + excluded.wait_answered_ms,
        wait_abandoned_ms = p.wait_abandoned_ms + excluded.wait_abandoned_ms,
        resolved = p.resolved + excluded.resolved,
        resolved_given = p.resolved_given + excluded.resolved_given,
        transferred = p.transferred + excluded.transferred,
        csat_n = p.csat_n + excluded.csat_n,
        csat_sum = p.csat_sum + excluded.csat_sum,
        csat_satisfied = p.csat_satisfied + excluded.csat_satisfied,
        nps_n = p.nps_n + excluded.nps_n,
        nps_promoters = p.nps_promoters + excluded.nps_promoters,
        nps_detractors = p.nps_detractors + excluded.nps_detractors,
        quality_n = p.quality_n + excluded.quality_n,
        quality_milli = p.quality_milli + excluded.quality_milli,
        rings = p.rings + excluded.rings,
        missed = p.missed + excluded.missed,
        missed_ring_ms = p.missed_ring_ms + excluded.missed_ring_ms,
        holds = p.holds + excluded.holds,
        callbacks_requested = p.callbacks_requested + excluded.callbacks_requested,
        callbacks_completed = p.callbacks_completed + excluded.callbacks_completed,
        callbacks_reached = p.callbacks_reached + excluded.callbacks_reached,
        revenue_cents = p.revenue_cents + excluded.revenue_cents,
        converted = p.converted + excluded.converted
        -- end counters
), handled_calls AS (
    INSERT INTO agent_metrics (client_id, call_id, queue_id, agent_id, queued_at, answered_at, completed_at, talk_s,
                               hold_s, wrap_s, handle_s, resolved, transferred, disposition)
    SELECT $1, call_id, queue_id, completed_by, queued_at, answered_at, completed_at, talk_ms / 1000.0,
           hold_ms / 1000.0, wrap_ms / 1000.0, (talk_ms + hold_ms + wrap_ms) / 1000.0, resolved, transferred,
           disposition
    FROM waits WHERE news & 8 <> 0 AND completed_by IS NOT NULL
-- family: feedback
), responses AS (
    INSERT INTO customer_satisfaction (client_id, event_id, call_id, agent_id, csat, nps, comment, responded_at)
    SELECT $1, event_id, call_id, agent_id, (doc->>'csat')::smallint, (doc->>'nps')::smallint,
           doc->>'comment', to_timestamp(ts_ms / 1000.0)
    FROM e WHERE type = 'csat.response'
), reviews AS (
    INSERT INTO call_quality_scores (client_id, score_id, call_id, agent_id, score, criteria, reviewer, source,
                                     scored_at)
    SELECT $1, event_id, call_id, agent_id, (doc->>'score')::numeric, doc->'criteria',
           doc->>'reviewer', CASE WHEN event_id LIKE 'api:%' THEN 'api' ELSE 'event' END, to_timestamp(ts_ms / 1000.0)
    FROM e WHERE type = 'quality.scored'
-- end family
-- end family
-- family: state (agent.state)
), st_batch AS (  -- per agent: its new agent.state events' first and last (by ts, then event_id), one row
    SELECT DISTINCT ON (agent_id) agent_id, doc->>'name' AS name, doc->>'team' AS team, ts_ms, event_id,
           doc->>'state' AS state,
           CASE WHEN doc->>'state' IN ('break', 'other') THEN coalesce(doc->>'reason', '') ELSE '' END AS reason,
           first_value(ts_ms) OVER w AS lo_ms, first_value(event_id) OVER w AS lo_event_id,
           first_value(doc->>'state') OVER w AS lo_state
    FROM e WHERE type = 'agent.state'
    WINDOW w AS (PARTITION BY agent_id ORDER BY ts_ms, event_id COLLATE "C")
    ORDER BY agent_id, ts_ms DESC, event_id COLLATE "C" DESC
), directory AS (  -- newest name and team; the head; the pair of adjacent stored events this batch split or made
                   -- (017_agent_state_gap.sql): the split is done below, except for the batches that go to
                   -- agent_states_store.sql (the row's next_ms is NULL then)
    INSERT INTO agents AS a (client_id, agent_id, name, team, seen_at, state_ms, state_event_id, state, state_reason,
                             next_ms, next_event_id, next_state)
    SELECT $1, agent_id, name, team, to_timestamp(ts_ms / 1000.0), ts_ms, event_id, state, reason,
           lo_ms, lo_event_id, lo_state
    FROM st_batch
    ORDER BY agent_id
    ON CONFLICT (client_id, agent_id) DO UPDATE SET
        -- a.* is the row as the last batch of this agent committed it: this one waited for it. excluded.state_*
        -- is this batch's last event of the agent, excluded.next_* its first. `newer`: its last event is the
        -- new head. `follows`: all its events follow the old head; the pair becomes (the old head, its first
        -- event). `inside`: all fall between prev and next; the pair becomes (prev, its first event) and the old
        -- next goes to after_*. Anything else: no pair is known (agent_states_store.sql splits the batch).
        (name, team, seen_at, state_ms, state_event_id, state, state_reason, prev_ms, prev_event_id, prev_state,
         prev_reason, next_ms, next_event_id, next_state, after_ms, after_event_id, after_state) = (
            SELECT CASE WHEN excluded.seen_at >= a.seen_at THEN coalesce(excluded.name, a.name) ELSE a.name END,
                   CASE WHEN excluded.seen_at >= a.seen_at THEN coalesce(excluded.team, a.team) ELSE a.team END,
                   greatest(a.seen_at, excluded.seen_at),
                   CASE WHEN m.newer THEN excluded.state_ms ELSE a.state_ms END,
                   CASE WHEN m.newer THEN excluded.state_event_id ELSE a.state_event_id END,
                   CASE WHEN m.newer THEN excluded.state ELSE a.state END,
                   CASE WHEN m.newer THEN excluded.state_reason ELSE a.state_reason END,
                   CASE WHEN m.inside THEN a.prev_ms ELSE a.state_ms END,
                   CASE WHEN m.inside THEN a.prev_event_id ELSE a.state_event_id END,
                   CASE WHEN m.inside THEN a.prev_state ELSE a.state END,
                   CASE WHEN m.inside THEN a.prev_reason ELSE a.state_reason END,
                   CASE WHEN m.follows OR m.inside THEN excluded.next_ms END, excluded.next_event_id,
                   excluded.next_state,
                   CASE WHEN m.inside THEN a.next_ms END, a.next_event_id, a.next_state
            FROM (SELECT f.newer, f.follows,
                         NOT f.follows AND a.next_ms IS NOT NULL
                         AND (a.prev_ms IS NULL OR (excluded.next_ms, excluded.next_event_id COLLATE "C")
                                                   > (a.prev_ms, a.prev_event_id COLLATE "C"))
                         AND (excluded.state_ms, excluded.state_event_id COLLATE "C")
                             < (a.next_ms, a.next_event_id COLLATE "C") AS inside
                  FROM (SELECT a.state_ms IS NULL OR (excluded.state_ms, excluded.state_event_id COLLATE "C")
                                                     > (a.state_ms, a.state_event_id COLLATE "C") AS newer,
                               coalesce((excluded.next_ms, excluded.next_event_id COLLATE "C")
                                        > (a.state_ms, a.state_event_id COLLATE "C"), false) AS follows) AS f) AS m)
    RETURNING a.agent_id, a.prev_ms, a.prev_event_id, a.prev_state, a.prev_reason, a.next_ms, a.after_ms,
              a.after_event_id, a.after_state
), st_chain AS (  -- per agent of the batch: the stored event before its new ones (its span was open, or ran to
                  -- after; ts NULL when there is none, a row that only carries `known`: split here), the new
                  -- events, the one after
    SELECT agent_id, prev_ms AS ts_ms, prev_event_id AS event_id, prev_state AS state, prev_reason AS reason,
           0 AS role, NULL::text AS was_before, next_ms IS NOT NULL AS known
    FROM directory
    UNION ALL
    SELECT agent_id, ts_ms, event_id, doc->>'state',
           CASE WHEN doc->>'state' IN ('break', 'other') THEN coalesce(doc->>'reason', '') ELSE '' END, 1, NULL, NULL
    FROM e WHERE type = 'agent.state'
    UNION ALL
    SELECT agent_id, after_ms, after_event_id, after_state, '', 2, prev_state, NULL
    FROM directory WHERE next_ms IS NOT NULL AND after_ms IS NOT NULL
), st_spans AS MATERIALIZED (  -- of the agents split here (their new events follow the head, or they are new, or all
                               -- fall between prev and the old next: after_ms set): each state's span [a, b), ver 1;
                               -- the last one stays open (b NULL); and, ver -1, the span from prev to after that the
                               -- new events split. The agents are told apart by a window, not a join: this statement's
                               -- plan is generic, its estimates a row or two, and a join of the batch's events with
                               -- its agents would be a nested loop (events × agents).
    SELECT agent_id, event_id, state, reason, role, was_before, ver, a, b, before
    FROM (SELECT agent_id, event_id, state, reason, role, was_before, 1 AS ver, ts_ms AS a, lead(ts_ms) OVER w AS b,
                 lag(state) OVER w AS before, bool_or(known) OVER (PARTITION BY agent_id) AS known
          FROM st_chain
          WINDOW w AS (PARTITION BY agent_id ORDER BY ts_ms NULLS FIRST, event_id COLLATE "C")) AS s
    WHERE known AND a IS NOT NULL
    UNION ALL
    SELECT agent_id, prev_event_id, prev_state, prev_reason, 0, NULL, -1, prev_ms, after_ms, NULL
    FROM directory WHERE next_ms IS NOT NULL AND after_ms IS NOT NULL AND prev_ms IS NOT NULL
), st_rolled AS (  -- the closed spans of logged-in states, cut at the 15-minute grid and at tenant day starts
    INSERT INTO agent_state_time AS r (client_id, agent_id, interval_start, state, reason, ms)
    SELECT $1, agent_id, to_timestamp(lo / 1000.0), state, reason, sum(ms)
    FROM (  -- a span inside one 15-minute cell, with day starts on the grid, is one piece: no function call
        SELECT agent_id, state, reason, a - a % 900000 AS lo, ver * (b - a) AS ms
        FROM st_spans
        WHERE role < 2 AND b > a AND state <> 'logged_out' AND b <= a - a % 900000 + 900000 AND $12 % 15 = 0
        UNION ALL
        SELECT s.agent_id, s.state, s.reason, k.lo, s.ver * k.ms
        FROM st_spans AS s CROSS JOIN LATERAL agent_state_pieces(s.a, s.b, $11, $12) AS k
        WHERE s.role < 2 AND s.b > s.a AND s.state <> 'logged_out'
          AND NOT (s.b <= s.a - s.a % 900000 + 900000 AND $12 % 15 = 0)
    ) AS k
    GROUP BY agent_id, lo, state, reason
    HAVING sum(ms) <> 0
    ORDER BY 2, 3, 4, 5
    ON CONFLICT (client_id, agent_id, interval_start, state, reason) DO UPDATE SET ms = r.ms + excluded.ms
), st_marks AS MATERIALIZED (  -- logins (a logged-in state after logged_out or none) and logouts of the new events,
                               -- and of the event after them, which has a new predecessor: made (1) or unmade (-1)
    SELECT agent_id, event_id, a, CASE WHEN state = 'logged_out' THEN 'logout' ELSE 'login' END AS kind,
           CASE WHEN state = 'logged_out' THEN coalesce(before <> 'logged_out', false)
                ELSE before IS NULL OR before = 'logged_out' END::int
           - CASE WHEN role = 1 THEN 0
                  WHEN state = 'logged_out' THEN coalesce(was_before <> 'logged_out', false)::int
                  ELSE (was_before IS NULL OR was_before = 'logged_out')::int END AS change
    FROM st_spans
    WHERE ver = 1 AND role > 0
), st_marked AS (
    INSERT INTO agent_state_marks (client_id, agent_id, event_id, at, kind)
    SELECT $1, agent_id, event_id, to_timestamp(a / 1000.0), kind FROM st_marks WHERE change > 0
    ON CONFLICT DO NOTHING
-- end family
)
SELECT event_id, NULL::text AS slow_agent, NULL::text AS held_call, NULL::text AS held_queue,
       NULL::text AS unmarked_agent, NULL::text AS unmarked_event FROM stored
-- family: state
UNION ALL  -- the agents whose new agent.state events agent_states_store.sql splits: a late event, or no head
SELECT NULL, agent_id, NULL, NULL, NULL, NULL FROM directory WHERE next_ms IS NULL
-- end family
-- family: calls
UNION ALL  -- the completed legs whose hold time a late hold or unhold changed: agent_metrics_holds.sql
SELECT NULL, NULL, call_id, queue_id, NULL, NULL FROM waits WHERE news & 8 = 0 AND hold_news <> 0
-- end family
-- family: state
UNION ALL  -- the marks an event's new predecessor unmade: agent_states_unmark.sql deletes them (this statement's
           -- snapshot may not hold them: the batch that wrote them may have committed while this one waited for it)
SELECT NULL, NULL, NULL, NULL, agent_id, event_id FROM st_marks WHERE change < 0
-- end family
