-- A run's outcome: $1 tenant, $2 schedule id, $3 status (delivered, failed), $4 error (NULL when delivered),
-- $5 attempts made.
UPDATE report_schedules SET last_run_at = now(), last_status = $3, last_error = $4, last_attempts = $5
WHERE client_id = $1 AND schedule_id = $2
