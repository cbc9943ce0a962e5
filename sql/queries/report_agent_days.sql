-- Agent × bucket (day) counters with the agent's name and team: $1 tenant, $2 bucket bounds, $3 one agent (NULL: all).
SELECT width_bucket(p.interval_start, $2::timestamptz[]) AS bucket, p.key, a.name, a.team,
       -- counters: bigint p
       sum(p.offered)::bigint AS offered, sum(p.answered)::bigint AS answered,
       sum(p.abandoned)::bigint AS abandoned, sum(p.short_abandoned)::bigint AS short_abandoned,
       sum(p.answered_within_sl)::bigint AS answered_within_sl,
       sum(p.abandoned_within_sl)::bigint AS abandoned_within_sl, sum(p.handled)::bigint AS handled,
       sum(p.handle_ms)::bigint AS handle_ms, sum(p.talk_ms)::bigint AS talk_ms, sum(p.hold_ms)::bigint AS hold_ms,
       sum(p.wrap_ms)::bigint AS wrap_ms, sum(p.wait_answered_ms)::bigint AS wait_answered_ms,
       sum(p.wait_abandoned_ms)::bigint AS wait_abandoned_ms, sum(p.resolved)::bigint AS resolved,
       sum(p.resolved_given)::bigint AS resolved_given, sum(p.transferred)::bigint AS transferred,
       sum(p.csat_n)::bigint AS csat_n, sum(p.csat_sum)::bigint AS csat_sum,
       sum(p.csat_satisfied)::bigint AS csat_satisfied, sum(p.nps_n)::bigint AS nps_n,
       sum(p.nps_promoters)::bigint AS nps_promoters, sum(p.nps_detractors)::bigint AS nps_detractors,
       sum(p.quality_n)::bigint AS quality_n, sum(p.quality_milli)::bigint AS quality_milli,
       sum(p.rings)::bigint AS rings, sum(p.missed)::bigint AS missed,
       sum(p.missed_ring_ms)::bigint AS missed_ring_ms, sum(p.holds)::bigint AS holds,
       sum(p.callbacks_requested)::bigint AS callbacks_requested,
       sum(p.callbacks_completed)::bigint AS callbacks_completed,
       sum(p.callbacks_reached)::bigint AS callbacks_reached, sum(p.revenue_cents)::bigint AS revenue_cents,
       sum(p.converted)::bigint AS converted
       -- end counters
FROM performance_trends p
LEFT JOIN agents a ON a.client_id = p.client_id AND a.agent_id = p.key
WHERE p.client_id = $1 AND p.dimension = 'agent' AND ($3::text IS NULL OR p.key = $3)
  AND p.interval_start >= ($2::timestamptz[])[1] AND p.interval_start < ($2::timestamptz[])[cardinality($2::timestamptz[])]
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2
