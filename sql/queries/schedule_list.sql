-- The tenant's schedules with their next run and last delivery, oldest first (never the secret): $1 tenant.
SELECT s.schedule_id, s.report, s.parameters, s.frequency, s.at_time, s.weekday, s.month_day, s.destination,
       s.created_by, s.created_at, s.last_run_at, s.last_status, s.last_error, s.last_attempts,
       d.next_run_at, d.claimed_until
FROM report_schedules s
LEFT JOIN report_schedule_due d ON d.client_id = s.client_id AND d.schedule_id = s.schedule_id
WHERE s.client_id = $1
ORDER BY s.created_at, s.schedule_id
