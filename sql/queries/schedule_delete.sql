-- Delete one schedule (its due row goes with it): $1 tenant, $2 schedule id. Returns the id when it existed.
DELETE FROM report_schedules WHERE client_id = $1 AND schedule_id = $2
RETURNING schedule_id
