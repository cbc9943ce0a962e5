-- When a schedule runs next, its claim released: $1 tenant, $2 schedule id, $3 next run.
INSERT INTO report_schedule_due (client_id, schedule_id, next_run_at)
VALUES ($1, $2, $3)
ON CONFLICT (client_id, schedule_id) DO UPDATE SET next_run_at = EXCLUDED.next_run_at, claimed_until = NULL
