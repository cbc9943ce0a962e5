-- Queue × 15-minute interval counters, in time order: $1 tenant, $2 from, $3 to, $4 one queue (NULL: all).
SELECT interval_start, key,
       -- counters: names
       offered, answered, abandoned, short_abandoned, answered_within_sl, abandoned_within_sl, handled, handle_ms,
       talk_ms, hold_ms, wrap_ms, wait_answered_ms, wait_abandoned_ms, resolved, resolved_given, transferred,
       csat_n, csat_sum, csat_satisfied, nps_n, nps_promoters, nps_detractors, quality_n, quality_milli, rings,
       missed, missed_ring_ms, holds, callbacks_requested, callbacks_completed, callbacks_reached, revenue_cents,
       converted
       -- end counters
FROM performance_trends
WHERE client_id = $1 AND dimension = 'queue' AND interval_start >= $2 AND interval_start < $3
  AND ($4::text IS NULL OR key = $4)
ORDER BY interval_start, key
