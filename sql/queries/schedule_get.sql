-- One schedule as the scheduler runs it (with its secret): $1 tenant, $2 schedule id.
SELECT schedule_id, report, parameters, frequency, at_time, weekday, month_day, destination, secret
FROM report_schedules
WHERE client_id = $1 AND schedule_id = $2
