-- What the anomaly rule needs for one closed interval, per queue with calls or a forecast in it:
-- $1 tenant, $2 interval start. The interval's counters; its forecast; the queue's sums over the
-- week before (rates and AHT baselines); offered in the same slot on each earlier day of that week
-- since the queue's history began (the volume baseline where there is no forecast).
WITH queues AS (
    SELECT key AS queue_id FROM performance_trends
    WHERE client_id = $1 AND dimension = 'queue' AND interval_start = $2
    UNION
    SELECT queue_id FROM predictive_analytics WHERE client_id = $1 AND interval_start = $2
)
SELECT q.queue_id, t.offered, t.answered, t.abandoned, t.short_abandoned, t.answered_within_sl, t.abandoned_within_sl,
       t.handled, t.handle_ms, f.offered AS fc_offered, f.aht_s AS fc_aht_s,
       w.week_answered, w.week_abandoned, w.week_short_abandoned, w.week_answered_within_sl,
       w.week_abandoned_within_sl, w.week_handled, w.week_handle_ms, s.same_slot
FROM queues q
LEFT JOIN performance_trends t
    ON t.client_id = $1 AND t.dimension = 'queue' AND t.key = q.queue_id AND t.interval_start = $2
LEFT JOIN predictive_analytics f
    ON f.client_id = $1 AND f.queue_id = q.queue_id AND f.interval_start = $2
LEFT JOIN LATERAL (
    SELECT sum(answered)::bigint AS week_answered, sum(abandoned)::bigint AS week_abandoned,
           sum(short_abandoned)::bigint AS week_short_abandoned,
           sum(answered_within_sl)::bigint AS week_answered_within_sl,
           sum(abandoned_within_sl)::bigint AS week_abandoned_within_sl, sum(handled)::bigint AS week_handled,
           sum(handle_ms)::bigint AS week_handle_ms, min(interval_start) AS first_seen
    FROM performance_trends
    WHERE client_id = $1 AND dimension = 'queue' AND key = q.queue_id
      AND interval_start >= $2::timestamptz - interval '7 days' AND interval_start < $2
) w ON true
LEFT JOIN LATERAL (
    SELECT array_agg(coalesce(p.offered, 0) ORDER BY d) AS same_slot
    FROM generate_series(1, 7) AS d
    LEFT JOIN performance_trends p
        ON p.client_id = $1 AND p.dimension = 'queue' AND p.key = q.queue_id
       AND p.interval_start = $2::timestamptz - d * interval '1 day'
    WHERE $2::timestamptz - d * interval '1 day' >= date_trunc('day', w.first_seen)
) s ON true
ORDER BY q.queue_id
