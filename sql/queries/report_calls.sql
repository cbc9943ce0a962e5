-- Handled calls, one row each, in completion order: $1 tenant, $2 from, $3 to, $4 one agent (NULL: all).
-- The times also come as text (*_iso), as server/history/reports.py's _ts writes them (UTC, whole seconds, Z):
-- formatted here in C, on PostgreSQL's side, instead of about 3.7 µs each in the server's event loop (three per
-- row: most of a million-row export's time). completed_at stays a timestamp: it is the key of a page.
SELECT call_id, queue_id, agent_id, completed_at, talk_s, hold_s, wrap_s, handle_s, resolved, transferred, disposition,
       to_char(queued_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS queued_at_iso,
       to_char(answered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS answered_at_iso,
       to_char(completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS completed_at_iso
FROM agent_metrics
WHERE client_id = $1 AND completed_at >= $2 AND completed_at < $3 AND ($4::text IS NULL OR agent_id = $4)
ORDER BY completed_at, call_id, queue_id
