-- How many schedules the tenant has: $1 tenant.
SELECT count(*) FROM report_schedules WHERE client_id = $1
