-- Claim at most $1 due schedules of any tenant for $2 seconds; a schedule another process holds is skipped
-- (SKIP LOCKED, and a claim not yet expired), so each due run is taken by one process only.
WITH due AS (
    SELECT client_id, schedule_id FROM report_schedule_due
    WHERE next_run_at <= now() AND (claimed_until IS NULL OR claimed_until < now())
    ORDER BY next_run_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE report_schedule_due d SET claimed_until = now() + make_interval(secs => $2)
FROM due
WHERE d.client_id = due.client_id AND d.schedule_id = due.schedule_id
RETURNING d.client_id, d.schedule_id, d.next_run_at
