-- The tenant's counters of one tenant day, summed over its queues and the tenant-wide feedback,
-- from the rollups: what the live state's counters of that day must equal. $1 tenant, $2 day.
SELECT coalesce(sum(offered), 0)::bigint AS offered, coalesce(sum(answered), 0)::bigint AS answered,
       coalesce(sum(abandoned), 0)::bigint AS abandoned, coalesce(sum(short_abandoned), 0)::bigint AS short_abandoned,
       coalesce(sum(answered_within_sl), 0)::bigint AS answered_within_sl,
       coalesce(sum(abandoned_within_sl), 0)::bigint AS abandoned_within_sl,
       coalesce(sum(handled), 0)::bigint AS handled, coalesce(sum(handle_ms), 0)::bigint AS handle_ms,
       coalesce(sum(wait_answered_ms), 0)::bigint AS wait_answered_ms,
       coalesce(sum(wait_abandoned_ms), 0)::bigint AS wait_abandoned_ms,
       coalesce(sum(rings) FILTER (WHERE dimension = 'queue'), 0)::bigint AS rings,
       coalesce(sum(missed) FILTER (WHERE dimension = 'queue'), 0)::bigint AS missed,
       coalesce(sum(holds) FILTER (WHERE dimension = 'queue'), 0)::bigint AS holds,
       coalesce(sum(callbacks_requested) FILTER (WHERE dimension = 'queue'), 0)::bigint AS callbacks_requested,
       coalesce(sum(callbacks_completed) FILTER (WHERE dimension = 'queue'), 0)::bigint AS callbacks_completed,
       coalesce(sum(revenue_cents) FILTER (WHERE dimension = 'queue'), 0)::bigint AS revenue_cents,
       coalesce(sum(csat_n) FILTER (WHERE dimension = 'tenant'), 0)::bigint AS csat_n,
       coalesce(sum(quality_n) FILTER (WHERE dimension = 'tenant'), 0)::bigint AS quality_n
FROM performance_daily
WHERE client_id = $1 AND day = $2 AND dimension IN ('queue', 'tenant')
