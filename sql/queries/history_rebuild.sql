-- Recompute a tenant's rollups over a time range from the stored facts (call_legs, customer_satisfaction,
-- call_quality_scores): the performance_trends rows whose interval_start lies in [$2, $3), the
-- performance_daily rows of the tenant days that begin in [$2, $3), and the performance_monthly rows of the
-- months those days lie in (a month's other days counted as performance_daily keeps them).
-- $1 tenant, $2 from, $3 to (timestamptz), $4 the tenant's time zone, $5 its day start in minutes after
-- midnight (as events_store.sql gets them).
--
-- Every counter is the one events_store.sql keeps incrementally, on the interval and day of its own fact's
-- ts: offered on queued_at; answered (and its wait, once queued_at is known) on answered_at for the queue
-- and answered_by; abandoned (and its wait) on abandoned_at for the queue; handled on completed_at for the
-- queue and completed_by (its hold time recounted from the leg's hold spans, 015_hold_spans.sql); CSAT, NPS and quality on the tenant row and the named agent's. Thresholds are
-- the leg's own (call_legs.sl_ms, short_abandon_ms). What a bulk load (`wallboard seed-history`) or a
-- change of thresholds runs; chunks that meet at tenant day starts cover both tables exactly once.
--
-- One statement: rows of the range that no fact supports any more are deleted, the others overwritten
-- with their recomputed values, so a concurrent reader sees the old range or the new one, never a gap.
-- The facts read lie in [$2, $3 + 26 hours): a day that begins before $3 can last 25 hours.
-- Needs DELETE on the rollups: run it as the tables' owner with wallboard.tenant set.
-- The lines between `-- counters: …` and `-- end counters` are written from server/ingest/schema.py by
-- `python -m server.ingest.schema_sql`: edit the declaration, not them.
WITH legs AS MATERIALIZED (
    SELECT queue_id, queued_at, answered_at, answered_by, abandoned_at, completed_at, completed_by,
           talk_ms, wrap_ms, resolved, transferred, revenue_cents, sl_ms, short_abandon_ms,
           -- recounted from the leg's hold spans when it has hold events (015_hold_spans.sql)
           CASE WHEN holds IS NULL THEN hold_ms
                ELSE leg_hold_ms(holds, completed_by, completed_at, coalesce(reported_hold_ms, hold_ms)) END AS hold_ms,
           -- NULL while an end is unknown (greatest() would make that 0)
           CASE WHEN queued_at IS NOT NULL AND answered_at IS NOT NULL
                THEN greatest(0, round(extract(epoch FROM answered_at - queued_at) * 1000))::bigint END AS wait_a,
           CASE WHEN queued_at IS NOT NULL AND abandoned_at IS NOT NULL
                THEN greatest(0, round(extract(epoch FROM abandoned_at - queued_at) * 1000))::bigint END AS wait_b
    FROM call_legs
    WHERE client_id = $1
      AND (queued_at >= $2::timestamptz AND queued_at < $3::timestamptz + interval '26 hours'
           OR answered_at >= $2 AND answered_at < $3::timestamptz + interval '26 hours'
           OR abandoned_at >= $2 AND abandoned_at < $3::timestamptz + interval '26 hours'
           OR completed_at >= $2 AND completed_at < $3::timestamptz + interval '26 hours')
), feedback AS (
    SELECT responded_at AS at, agent_id, csat::integer AS csat, nps::integer AS nps, NULL::bigint AS quality
    FROM customer_satisfaction
    WHERE client_id = $1 AND responded_at >= $2 AND responded_at < $3::timestamptz + interval '26 hours'
    UNION ALL
    SELECT scored_at, agent_id, NULL, NULL, round(score * 1000)::bigint
    FROM call_quality_scores
    WHERE client_id = $1 AND scored_at >= $2 AND scored_at < $3::timestamptz + interval '26 hours'
), activity_events AS (  -- rings, misses, holds and callbacks: every stored event is its own fact
    SELECT ts AS at, type, queue_id, agent_id,
           coalesce(round((body->>'ring_s')::float8 * 1000)::bigint, 0) AS ring_ms, body->>'outcome' AS outcome
    FROM events
    WHERE client_id = $1 AND ts >= $2 AND ts < $3::timestamptz + interval '26 hours'
      AND type IN ('call.offered', 'call.missed', 'call.hold', 'callback.requested', 'callback.completed')
), offered AS (  -- each kind of fact per interval and day of its own ts; the kinds are joined below
    SELECT 'queue'::text AS dimension, queue_id AS key,
           date_bin('15 minutes', queued_at, timestamptz '2000-01-01 00:00Z') AS interval_start,
           ((queued_at AT TIME ZONE $4) - make_interval(mins => $5))::date AS day,
           -- counters: rebuild queued
           count(*) AS offered
           -- end counters
    FROM legs WHERE queued_at IS NOT NULL
    GROUP BY 1, 2, 3, 4
), answered AS (  -- with its wait when the queued ts is known; for the queue and the agent who answered
    SELECT d.dimension, d.key,
           date_bin('15 minutes', answered_at, timestamptz '2000-01-01 00:00Z') AS interval_start,
           ((answered_at AT TIME ZONE $4) - make_interval(mins => $5))::date AS day,
           -- counters: rebuild answered
           count(*) AS answered, count(*) FILTER (WHERE wait_a <= sl_ms) AS answered_within_sl,
           sum(wait_a) AS wait_answered_ms
           -- end counters
    FROM legs, LATERAL (VALUES ('queue', queue_id), ('agent', answered_by)) AS d(dimension, key)
    WHERE answered_at IS NOT NULL AND d.key IS NOT NULL
    GROUP BY 1, 2, 3, 4
), abandoned AS (
    SELECT 'queue'::text AS dimension, queue_id AS key,
           date_bin('15 minutes', abandoned_at, timestamptz '2000-01-01 00:00Z') AS interval_start,
           ((abandoned_at AT TIME ZONE $4) - make_interval(mins => $5))::date AS day,
           -- counters: rebuild abandoned
           count(*) AS abandoned, count(*) FILTER (WHERE wait_b < short_abandon_ms) AS short_abandoned,
           count(*) FILTER (WHERE wait_b <= sl_ms) AS abandoned_within_sl, sum(wait_b) AS wait_abandoned_ms
           -- end counters
    FROM legs WHERE abandoned_at IS NOT NULL
    GROUP BY 1, 2, 3, 4
), handled AS (  -- for the queue and the agent who completed it
    SELECT d.dimension, d.key,
           date_bin('15 minutes', completed_at, timestamptz '2000-01-01 00:00Z') AS interval_start,
           ((completed_at AT TIME ZONE $4) - make_interval(mins => $5))::date AS day,
           -- counters: rebuild completed
           count(*) AS handled, sum(talk_ms + hold_ms + wrap_ms) AS handle_ms, sum(talk_ms) AS talk_ms,
           sum(hold_ms) AS hold_ms, sum(wrap_ms) AS wrap_ms, count(*) FILTER (WHERE resolved) AS resolved,
           count(resolved) AS resolved_given, count(*) FILTER (WHERE transferred) AS transferred,
           sum(revenue_cents) AS revenue_cents, count(*) FILTER (WHERE revenue_cents >= 1) AS converted
           -- end counters
    FROM legs, LATERAL (VALUES ('queue', queue_id), ('agent', completed_by)) AS d(dimension, key)
    WHERE completed_at IS NOT NULL AND d.key IS NOT NULL
    GROUP BY 1, 2, 3, 4
), rated AS (  -- CSAT, NPS and quality, for the tenant and the agent when one is named
    SELECT d.dimension, d.key,
           date_bin('15 minutes', at, timestamptz '2000-01-01 00:00Z') AS interval_start,
           ((at AT TIME ZONE $4) - make_interval(mins => $5))::date AS day,
           -- counters: rebuild feedback
           count(csat) AS csat_n, sum(csat) AS csat_sum, count(*) FILTER (WHERE csat >= 4) AS csat_satisfied,
           count(nps) AS nps_n, count(*) FILTER (WHERE nps >= 9) AS nps_promoters,
           count(*) FILTER (WHERE nps <= 6) AS nps_detractors, count(quality) AS quality_n,
           sum(quality) AS quality_milli
           -- end counters
    FROM feedback, LATERAL (VALUES ('tenant', ''), ('agent', agent_id)) AS d(dimension, key)
    WHERE d.key IS NOT NULL
    GROUP BY 1, 2, 3, 4
), activity AS (  -- for the queue and the agent the event names
    SELECT d.dimension, d.key,
           date_bin('15 minutes', at, timestamptz '2000-01-01 00:00Z') AS interval_start,
           ((at AT TIME ZONE $4) - make_interval(mins => $5))::date AS day,
           -- counters: rebuild activity
           count(*) FILTER (WHERE type = 'call.offered') AS rings,
           count(*) FILTER (WHERE type = 'call.missed') AS missed,
           coalesce(sum(ring_ms) FILTER (WHERE type = 'call.missed'), 0) AS missed_ring_ms,
           count(*) FILTER (WHERE type = 'call.hold') AS holds,
           count(*) FILTER (WHERE type = 'callback.requested') AS callbacks_requested,
           count(*) FILTER (WHERE type = 'callback.completed') AS callbacks_completed,
           count(*) FILTER (WHERE type = 'callback.completed' AND outcome = 'reached') AS callbacks_reached
           -- end counters
    FROM activity_events, LATERAL (VALUES ('queue', queue_id), ('agent', agent_id)) AS d(dimension, key)
    WHERE d.key IS NOT NULL
    GROUP BY 1, 2, 3, 4
), facts AS MATERIALIZED (  -- per interval and day: an interval splits only when a day starts inside it
    SELECT dimension, key, interval_start, day,
           -- counters: coalesce
           coalesce(offered, 0) AS offered, coalesce(answered, 0) AS answered, coalesce(abandoned, 0) AS abandoned,
           coalesce(short_abandoned, 0) AS short_abandoned, coalesce(answered_within_sl, 0) AS answered_within_sl,
           coalesce(abandoned_within_sl, 0) AS abandoned_within_sl, coalesce(handled, 0) AS handled,
           coalesce(handle_ms, 0) AS handle_ms, coalesce(talk_ms, 0) AS talk_ms, coalesce(hold_ms, 0) AS hold_ms,
           coalesce(wrap_ms, 0) AS wrap_ms, coalesce(wait_answered_ms, 0) AS wait_answered_ms,
           coalesce(wait_abandoned_ms, 0) AS wait_abandoned_ms, coalesce(resolved, 0) AS resolved,
           coalesce(resolved_given, 0) AS resolved_given, coalesce(transferred, 0) AS transferred,
           coalesce(csat_n, 0) AS csat_n, coalesce(csat_sum, 0) AS csat_sum,
           coalesce(csat_satisfied, 0) AS csat_satisfied, coalesce(nps_n, 0) AS nps_n,
           coalesce(nps_promoters, 0) AS nps_promoters, coalesce(nps_detractors, 0) AS nps_detractors,
           coalesce(quality_n, 0) AS quality_n, coalesce(quality_milli, 0) AS quality_milli,
           coalesce(rings, 0) AS rings, coalesce(missed, 0) AS missed,
           coalesce(missed_ring_ms, 0) AS missed_ring_ms, coalesce(holds, 0) AS holds,
           coalesce(callbacks_requested, 0) AS callbacks_requested,
           coalesce(callbacks_completed, 0) AS callbacks_completed,
           coalesce(callbacks_reached, 0) AS callbacks_reached, coalesce(revenue_cents, 0) AS revenue_cents,
           coalesce(converted, 0) AS converted
           -- end counters
    FROM offered
         FULL JOIN answered USING (dimension, key, interval_start, day)
         FULL JOIN abandoned USING (dimension, key, interval_start, day)
         FULL JOIN handled USING (dimension, key, interval_start, day)
         FULL JOIN rated USING (dimension, key, interval_start, day)
         FULL JOIN activity USING (dimension, key, interval_start, day)
), intervals AS MATERIALIZED (  -- with the day starting on the 15-minute grid, facts has one row per interval
    SELECT dimension, key, interval_start,
           -- counters: names
           offered, answered, abandoned, short_abandoned, answered_within_sl, abandoned_within_sl, handled,
           handle_ms, talk_ms, hold_ms, wrap_ms, wait_answered_ms, wait_abandoned_ms, resolved, resolved_given,
           transferred, csat_n, csat_sum, csat_satisfied, nps_n, nps_promoters, nps_detractors, quality_n,
           quality_milli, rings, missed, missed_ring_ms, holds, callbacks_requested, callbacks_completed,
           callbacks_reached, revenue_cents, converted
           -- end counters
    FROM facts
    WHERE $5 % 15 = 0 AND interval_start >= $2 AND interval_start < $3
    UNION ALL
    SELECT dimension, key, interval_start,
           -- counters: sum as
           sum(offered) AS offered, sum(answered) AS answered, sum(abandoned) AS abandoned,
           sum(short_abandoned) AS short_abandoned, sum(answered_within_sl) AS answered_within_sl,
           sum(abandoned_within_sl) AS abandoned_within_sl, sum(handled) AS handled, sum(handle_ms) AS handle_ms,
           sum(talk_ms) AS talk_ms, sum(hold_ms) AS hold_ms, sum(wrap_ms) AS wrap_ms,
           sum(wait_answered_ms) AS wait_answered_ms, sum(wait_abandoned_ms) AS wait_abandoned_ms,
           sum(resolved) AS resolved, sum(resolved_given) AS resolved_given, sum(transferred) AS transferred,
           sum(csat_n) AS csat_n, sum(csat_sum) AS csat_sum, sum(csat_satisfied) AS csat_satisfied,
           sum(nps_n) AS nps_n, sum(nps_promoters) AS nps_promoters, sum(nps_detractors) AS nps_detractors,
           sum(quality_n) AS quality_n, sum(quality_milli) AS quality_milli, sum(rings) AS rings,
           sum(missed) AS missed, sum(missed_ring_ms) AS missed_ring_ms, sum(holds) AS holds,
           sum(callbacks_requested) AS callbacks_requested, sum(callbacks_completed) AS callbacks_completed,
           sum(callbacks_reached) AS callbacks_reached, sum(revenue_cents) AS revenue_cents,
           sum(converted) AS converted
           -- end counters
    FROM facts
    WHERE $5 % 15 <> 0 AND interval_start >= $2 AND interval_start < $3
    GROUP BY 1, 2, 3
), days AS MATERIALIZED (  -- the days that begin in [$2, $3): later than the day of the instant before $2, ...
    SELECT dimension, key, day,
           -- counters: sum as
           sum(offered) AS offered, sum(answered) AS answered, sum(abandoned) AS abandoned,
           sum(short_abandoned) AS short_abandoned, sum(answered_within_sl) AS answered_within_sl,
           sum(abandoned_within_sl) AS abandoned_within_sl, sum(handled) AS handled, sum(handle_ms) AS handle_ms,
           sum(talk_ms) AS talk_ms, sum(hold_ms) AS hold_ms, sum(wrap_ms) AS wrap_ms,
           sum(wait_answered_ms) AS wait_answered_ms, sum(wait_abandoned_ms) AS wait_abandoned_ms,
           sum(resolved) AS resolved, sum(resolved_given) AS resolved_given, sum(transferred) AS transferred,
           sum(csat_n) AS csat_n, sum(csat_sum) AS csat_sum, sum(csat_satisfied) AS csat_satisfied,
           sum(nps_n) AS nps_n, sum(nps_promoters) AS nps_promoters, sum(nps_detractors) AS nps_detractors,
           sum(quality_n) AS quality_n, sum(quality_milli) AS quality_milli, sum(rings) AS rings,
           sum(missed) AS missed, sum(missed_ring_ms) AS missed_ring_ms, sum(holds) AS holds,
           sum(callbacks_requested) AS callbacks_requested, sum(callbacks_completed) AS callbacks_completed,
           sum(callbacks_reached) AS callbacks_reached, sum(revenue_cents) AS revenue_cents,
           sum(converted) AS converted
           -- end counters
    FROM facts
    WHERE day > (($2::timestamptz - interval '1 microsecond') AT TIME ZONE $4 - make_interval(mins => $5))::date
      AND day <= (($3::timestamptz - interval '1 microsecond') AT TIME ZONE $4 - make_interval(mins => $5))::date
    GROUP BY 1, 2, 3
), stale_intervals AS (
    DELETE FROM performance_trends AS p
    WHERE p.client_id = $1 AND p.interval_start >= $2 AND p.interval_start < $3
      AND (p.dimension, p.key, p.interval_start) NOT IN (SELECT dimension, key, interval_start FROM intervals)
), stale_days AS (  -- ... and not later than the day of the instant before $3
    DELETE FROM performance_daily AS p
    WHERE p.client_id = $1
      AND p.day > (($2::timestamptz - interval '1 microsecond') AT TIME ZONE $4 - make_interval(mins => $5))::date
      AND p.day <= (($3::timestamptz - interval '1 microsecond') AT TIME ZONE $4 - make_interval(mins => $5))::date
      AND (p.dimension, p.key, p.day) NOT IN (SELECT dimension, key, day FROM days)
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
    FROM days
    ORDER BY dimension, key, day
    ON CONFLICT (client_id, dimension, key, day) DO UPDATE SET
        -- counters: replace
        offered = excluded.offered,
        answered = excluded.answered,
        abandoned = excluded.abandoned,
        short_abandoned = excluded.short_abandoned,
        answered_within_sl = excluded.answered_within_sl,
        abandoned_within_sl = excluded.abandoned_within_sl,
        handled = excluded.handled,
        handle_ms = excluded.handle_ms,
        talk_ms = excluded.talk_ms,
        hold_ms = excluded.hold_ms,
        wrap_ms = excluded.wrap_ms,
        wait_answered_ms = excluded.wait_answered_ms,
        wait_abandoned_ms = excluded.wait_abandoned_ms,
        resolved = excluded.resolved,
        resolved_given = excluded.resolved_given,
        transferred = excluded.transferred,
        csat_n = excluded.csat_n,
        csat_sum = excluded.csat_sum,
        csat_satisfied = excluded.csat_satisfied,
        nps_n = excluded.nps_n,
        nps_promoters = excluded.nps_promoters,
        nps_detractors = excluded.nps_detractors,
        quality_n = excluded.quality_n,
        quality_milli = excluded.quality_milli,
        rings = excluded.rings,
        missed = excluded.missed,
        missed_ring_ms = excluded.missed_ring_ms,
        holds = excluded.holds,
        callbacks_requested = excluded.callbacks_requested,
        callbacks_completed = excluded.callbacks_completed,
        callbacks_reached = excluded.callbacks_reached,
        revenue_cents = excluded.revenue_cents,
        converted = excluded.converted
        -- end counters
), span AS (  -- the day before the rebuilt days, the last rebuilt day, and the months they lie in
    SELECT b.before, b.last, date_trunc('month', b.before + 1)::date AS first_month,
           date_trunc('month', b.last)::date AS last_month
    FROM (SELECT (($2::timestamptz - interval '1 microsecond') AT TIME ZONE $4
                  - make_interval(mins => $5))::date AS before,
                 (($3::timestamptz - interval '1 microsecond') AT TIME ZONE $4
                  - make_interval(mins => $5))::date AS last) AS b
), months AS MATERIALIZED (  -- every month a rebuilt day lies in: its rebuilt days and its other days as kept
    SELECT dimension, key, date_trunc('month', day)::date AS month,
           -- counters: sum as
           sum(offered) AS offered, sum(answered) AS answered, sum(abandoned) AS abandoned,
           sum(short_abandoned) AS short_abandoned, sum(answered_within_sl) AS answered_within_sl,
           sum(abandoned_within_sl) AS abandoned_within_sl, sum(handled) AS handled, sum(handle_ms) AS handle_ms,
           sum(talk_ms) AS talk_ms, sum(hold_ms) AS hold_ms, sum(wrap_ms) AS wrap_ms,
           sum(wait_answered_ms) AS wait_answered_ms, sum(wait_abandoned_ms) AS wait_abandoned_ms,
           sum(resolved) AS resolved, sum(resolved_given) AS resolved_given, sum(transferred) AS transferred,
           sum(csat_n) AS csat_n, sum(csat_sum) AS csat_sum, sum(csat_satisfied) AS csat_satisfied,
           sum(nps_n) AS nps_n, sum(nps_promoters) AS nps_promoters, sum(nps_detractors) AS nps_detractors,
           sum(quality_n) AS quality_n, sum(quality_milli) AS quality_milli, sum(rings) AS rings,
           sum(missed) AS missed, sum(missed_ring_ms) AS missed_ring_ms, sum(holds) AS holds,
           sum(callbacks_requested) AS callbacks_requested, sum(callbacks_completed) AS callbacks_completed,
           sum(callbacks_reached) AS callbacks_reached, sum(revenue_cents) AS revenue_cents,
           sum(converted) AS converted
           -- end counters
    FROM (SELECT dimension, key, day,
                 -- counters: names
                 offered, answered, abandoned, short_abandoned, answered_within_sl, abandoned_within_sl, handled,
                 handle_ms, talk_ms, hold_ms, wrap_ms, wait_answered_ms, wait_abandoned_ms, resolved,
                 resolved_given, transferred, csat_n, csat_sum, csat_satisfied, nps_n, nps_promoters,
                 nps_detractors, quality_n, quality_milli, rings, missed, missed_ring_ms, holds,
                 callbacks_requested, callbacks_completed, callbacks_reached, revenue_cents, converted
                 -- end counters
          FROM days
          UNION ALL
          SELECT dimension, key, day,
                 -- counters: names
                 offered, answered, abandoned, short_abandoned, answered_within_sl, abandoned_within_sl, handled,
                 handle_ms, talk_ms, hold_ms, wrap_ms, wait_answered_ms, wait_abandoned_ms, resolved,
                 resolved_given, transferred, csat_n, csat_sum, csat_satisfied, nps_n, nps_promoters,
                 nps_detractors, quality_n, quality_milli, rings, missed, missed_ring_ms, holds,
                 callbacks_requested, callbacks_completed, callbacks_reached, revenue_cents, converted
                 -- end counters
          FROM performance_daily AS p, span AS s
          WHERE p.client_id = $1 AND p.day >= s.first_month AND p.day < (s.last_month + interval '1 month')::date
            AND NOT (p.day > s.before AND p.day <= s.last)) AS d
    GROUP BY 1, 2, 3
), stale_months AS (
    DELETE FROM performance_monthly AS p
    USING span AS s
    WHERE p.client_id = $1 AND p.month >= s.first_month AND p.month <= s.last_month
      AND (p.dimension, p.key, p.month) NOT IN (SELECT dimension, key, month FROM months)
), monthly AS (
    INSERT INTO performance_monthly AS p (client_id, dimension, key, month,
        -- counters: names
        offered, answered, abandoned, short_abandoned, answered_within_sl, abandoned_within_sl, handled, handle_ms,
        talk_ms, hold_ms, wrap_ms, wait_answered_ms, wait_abandoned_ms, resolved, resolved_given, transferred,
        csat_n, csat_sum, csat_satisfied, nps_n, nps_promoters, nps_detractors, quality_n, quality_milli, rings,
        missed, missed_ring_ms, holds, callbacks_requested, callbacks_completed, callbacks_reached, revenue_cents,
        converted
        -- end counters
    )
    SELECT $1, dimension, key, month,
           -- counters: names
           offered, answered, abandoned, short_abandoned, answered_within_sl, abandoned_within_sl, handled,
           handle_ms, talk_ms, hold_ms, wrap_ms, wait_answered_ms, wait_abandoned_ms, resolved, resolved_given,
           transferred, csat_n, csat_sum, csat_satisfied, nps_n, nps_promoters, nps_detractors, quality_n,
           quality_milli, rings, missed, missed_ring_ms, holds, callbacks_requested, callbacks_completed,
           callbacks_reached, revenue_cents, converted
           -- end counters
    FROM months
    ORDER BY dimension, key, month
    ON CONFLICT (client_id, dimension, key, month) DO UPDATE SET
        -- counters: replace
        offered = excluded.offered,
        answered = excluded.answered,
        abandoned = excluded.abandoned,
        short_abandoned = excluded.short_abandoned,
        answered_within_sl = excluded.answered_within_sl,
        abandoned_within_sl = excluded.abandoned_within_sl,
        handled = excluded.handled,
        handle_ms = excluded.handle_ms,
        talk_ms = excluded.talk_ms,
        hold_ms = excluded.hold_ms,
        wrap_ms = excluded.wrap_ms,
        wait_answered_ms = excluded.wait_answered_ms,
        wait_abandoned_ms = excluded.wait_abandoned_ms,
        resolved = excluded.resolved,
        resolved_given = excluded.resolved_given,
        transferred = excluded.transferred,
        csat_n = excluded.csat_n,
        csat_sum = excluded.csat_sum,
        csat_satisfied = excluded.csat_satisfied,
        nps_n = excluded.nps_n,
        nps_promoters = excluded.nps_promoters,
        nps_detractors = excluded.nps_detractors,
        quality_n = excluded.quality_n,
        quality_milli = excluded.quality_milli,
        rings = excluded.rings,
        missed = excluded.missed,
        missed_ring_ms = excluded.missed_ring_ms,
        holds = excluded.holds,
        callbacks_requested = excluded.callbacks_requested,
        callbacks_completed = excluded.callbacks_completed,
        callbacks_reached = excluded.callbacks_reached,
        revenue_cents = excluded.revenue_cents,
        converted = excluded.converted
        -- end counters
)
INSERT INTO performance_trends AS p (client_id, dimension, key, interval_start,
    -- counters: names
    offered, answered, abandoned, short_abandoned, answered_within_sl, abandoned_within_sl, handled, handle_ms,
    talk_ms, hold_ms, wrap_ms, wait_answered_ms, wait_abandoned_ms, resolved, resolved_given, transferred, csat_n,
    csat_sum, csat_satisfied, nps_n, nps_promoters, nps_detractors, quality_n, quality_milli, rings, missed,
    missed_ring_ms, holds, callbacks_requested, callbacks_completed, callbacks_reached, revenue_cents, converted
    -- end counters
)
SELECT $1, dimension, key, interval_start,
       -- counters: names
       offered, answered, abandoned, short_abandoned, answered_within_sl, abandoned_within_sl, handled, handle_ms,
       talk_ms, hold_ms, wrap_ms, wait_answered_ms, wait_abandoned_ms, resolved, resolved_given, transferred,
       csat_n, csat_sum, csat_satisfied, nps_n, nps_promoters, nps_detractors, quality_n, quality_milli, rings,
       missed, missed_ring_ms, holds, callbacks_requested, callbacks_completed, callbacks_reached, revenue_cents,
       converted
       -- end counters
FROM intervals
ORDER BY dimension, key, interval_start
ON CONFLICT (client_id, dimension, key, interval_start) DO UPDATE SET
    -- counters: replace
    offered = excluded.offered,
    answered = excluded.answered,
    abandoned = excluded.abandoned,
    short_abandoned = excluded.short_abandoned,
    answered_within_sl = excluded.answered_within_sl,
    abandoned_within_sl = excluded.abandoned_within_sl,
    handled = excluded.handled,
    handle_ms = excluded.handle_ms,
    talk_ms = excluded.talk_ms,
    hold_ms = excluded.hold_ms,
    wrap_ms = excluded.wrap_ms,
    wait_answered_ms = excluded.wait_answered_ms,
    wait_abandoned_ms = excluded.wait_abandoned_ms,
    resolved = excluded.resolved,
    resolved_given = excluded.resolved_given,
    transferred = excluded.transferred,
    csat_n = excluded.csat_n,
    csat_sum = excluded.csat_sum,
    csat_satisfied = excluded.csat_satisfied,
    nps_n = excluded.nps_n,
    nps_promoters = excluded.nps_promoters,
    nps_detractors = excluded.nps_detractors,
    quality_n = excluded.quality_n,
    quality_milli = excluded.quality_milli,
    rings = excluded.rings,
    missed = excluded.missed,
    missed_ring_ms = excluded.missed_ring_ms,
    holds = excluded.holds,
    callbacks_requested = excluded.callbacks_requested,
    callbacks_completed = excluded.callbacks_completed,
    callbacks_reached = excluded.callbacks_reached,
    revenue_cents = excluded.revenue_cents,
    converted = excluded.converted
    -- end counters
