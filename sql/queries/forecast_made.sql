-- When the tenant's current forecast was made (NULL: none covers $2 onward). $1 tenant, $2 now.
SELECT max(made_at)
FROM predictive_analytics
WHERE client_id = $1 AND interval_start >= $2
