-- A new report schedule: $1 tenant, $2 report, $3 parameters (JSON), $4 frequency, $5 at_time (HH:MM[:SS]),
-- $6 weekday (1 = Monday, weekly only), $7 month_day (monthly only), $8 destination (JSON), $9 secret, $10 creator.
INSERT INTO report_schedules (client_id, report, parameters, frequency, at_time, weekday, month_day, destination,
                              secret, created_by)
VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8::jsonb, $9, $10)
RETURNING schedule_id, created_at
