-- One audit entry: $1 tenant, $2 sub, $3 role, $4 action, $5 route, $6 parameters (JSON text).
INSERT INTO analytics_audit_log (client_id, sub, role, action, route, parameters)
VALUES ($1, $2, $3, $4, $5, $6::jsonb)
