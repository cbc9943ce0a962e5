-- Events of a tenant from $2 on, received up to $6, in ts order, for rebuilding live state
-- (events received later are applied by their own ingest request).
-- Keyset pagination on (ts, event_id): $3/$4 are the last row of the previous page.
SELECT event_id, type, ts, queue_id, agent_id, call_id, body::text AS body
FROM events
WHERE client_id = $1 AND ts >= $2 AND (ts, event_id) > ($3, $4) AND received_at <= $6
ORDER BY ts, event_id
LIMIT $5
