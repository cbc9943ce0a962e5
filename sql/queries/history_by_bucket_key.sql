-- Rollup counters per bucket and key (queue or agent): $1 tenant, $2 dimension, $3 keys to keep
-- (NULL: all), $4 bucket bounds (as in history_by_bucket.sql).
SELECT width_bucket(interval_start, $4::timestamptz[]) AS bucket, key,
       -- counters: bigint
       sum(offered)::bigint AS offered, sum(answered)::bigint AS answered, sum(abandoned)::bigint AS abandoned,
       sum(short_abandoned)::bigint AS short_abandoned, sum(answered_within_sl)::bigint AS answered_within_sl,
       sum(abandoned_within_sl)::bigint AS abandoned_within_sl, sum(handled)::bigint AS handled,
       sum(handle_ms)::bigint AS handle_ms, sum(talk_ms)::bigint AS talk_ms, sum(hold_ms)::bigint AS hold_ms,
       sum(wrap_ms)::bigint AS wrap_ms, sum(wait_answered_ms)::bigint AS wait_answered_ms,
       sum(wait_abandoned_ms)::bigint AS wait_abandoned_ms, sum(resolved)::bigint AS resolved,
       sum(resolved_given)::bigint AS resolved_given, sum(transferred)::bigint AS transferred,
       sum(csat_n)::bigint AS csat_n, sum(csat_sum)::bigint AS csat_sum,
       sum(csat_satisfied)::bigint AS csat_satisfied, sum(nps_n)::bigint AS nps_n,
       sum(nps_promoters)::bigint AS nps_promoters, sum(nps_detractors)::bigint AS nps_detractors,
       sum(quality_n)::bigint AS quality_n, sum(quality_milli)::bigint AS quality_milli,
       sum(rings)::bigint AS rings, sum(missed)::bigint AS missed, sum(missed_ring_ms)::bigint AS missed_ring_ms,
       sum(holds)::bigint AS holds, sum(callbacks_requested)::bigint AS callbacks_requested,
       sum(callbacks_completed)::bigint AS callbacks_completed, sum(callbacks_reached)::bigint AS callbacks_reached,
       sum(revenue_cents)::bigint AS revenue_cents, sum(converted)::bigint AS converted
       -- end counters
FROM performance_trends
WHERE client_id = $1 AND dimension = $2 AND ($3::text[] IS NULL OR key = ANY ($3))
  AND interval_start >= ($4::timestamptz[])[1] AND interval_start < ($4::timestamptz[])[cardinality($4::timestamptz[])]
GROUP BY 1, 2
ORDER BY 1, 2
