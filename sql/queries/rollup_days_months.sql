-- The tenant-day rows of a history query whose range holds whole tenant months [$5, $6): the daily rows
-- before $5 and from $6 on, and one monthly row per key and month in between (its day = the month's
-- first day). server/history/figures.py puts it in place of performance_daily in a rollup query; that
-- query's own conditions (tenant, dimension, keys, days) apply to each part.
-- The lines between `-- counters: …` and `-- end counters` are written from server/ingest/schema.py by
-- `python -m server.ingest.schema_sql`: edit the declaration, not them.
SELECT client_id, dimension, key, day,
       -- counters: names
       offered, answered, abandoned, short_abandoned, answered_within_sl, abandoned_within_sl, handled, handle_ms,
       talk_ms, hold_ms, wrap_ms, wait_answered_ms, wait_abandoned_ms, resolved, resolved_given, transferred,
       csat_n, csat_sum, csat_satisfied, nps_n, nps_promoters, nps_detractors, quality_n, quality_milli, rings,
       missed, missed_ring_ms, holds, callbacks_requested, callbacks_completed, callbacks_reached, revenue_cents,
       converted
       -- end counters
FROM performance_daily WHERE day < $5::date
UNION ALL
SELECT client_id, dimension, key, day,
       -- counters: names
       offered, answered, abandoned, short_abandoned, answered_within_sl, abandoned_within_sl, handled, handle_ms,
       talk_ms, hold_ms, wrap_ms, wait_answered_ms, wait_abandoned_ms, resolved, resolved_given, transferred,
       csat_n, csat_sum, csat_satisfied, nps_n, nps_promoters, nps_detractors, quality_n, quality_milli, rings,
       missed, missed_ring_ms, holds, callbacks_requested, callbacks_completed, callbacks_reached, revenue_cents,
       converted
       -- end counters
FROM performance_daily WHERE day >= $6::date
UNION ALL
SELECT client_id, dimension, key, month,
       -- counters: names
       offered, answered, abandoned, short_abandoned, answered_within_sl, abandoned_within_sl, handled, handle_ms,
       talk_ms, hold_ms, wrap_ms, wait_answered_ms, wait_abandoned_ms, resolved, resolved_given, transferred,
       csat_n, csat_sum, csat_satisfied, nps_n, nps_promoters, nps_detractors, quality_n, quality_milli, rings,
       missed, missed_ring_ms, holds, callbacks_requested, callbacks_completed, callbacks_reached, revenue_cents,
       converted
       -- end counters
FROM performance_monthly WHERE month >= $5::date AND month < $6::date
