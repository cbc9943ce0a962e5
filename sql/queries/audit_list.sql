-- Audit entries of a period, newest first: $1 tenant, $2 from, $3 to, $4 limit.
SELECT at, sub, role, action, route, parameters
FROM analytics_audit_log
WHERE client_id = $1 AND at >= $2 AND at < $3
ORDER BY at DESC, entry_id DESC
LIMIT $4
