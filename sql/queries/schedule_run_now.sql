-- Make a schedule due at once (its claim, if any, stands): $1 tenant, $2 schedule id. Returns the id when it exists.
UPDATE report_schedule_due SET next_run_at = now()
WHERE client_id = $1 AND schedule_id = $2
RETURNING schedule_id
