-- Callbacks requested before $2 (and from $3 on) that no callback.completed closed: the pending ones a
-- rebuild of the live state brings back although their request lies before its replay window.
SELECT r.event_id, r.type, r.ts, r.queue_id, r.agent_id, r.call_id, r.body::text AS body
FROM events r
WHERE r.client_id = $1 AND r.type = 'callback.requested' AND r.ts < $2 AND r.ts >= $3
  AND NOT EXISTS (SELECT 1 FROM events c
                  WHERE c.client_id = $1 AND c.type = 'callback.completed' AND c.ts >= $3
                    AND c.body->>'callback_id' = r.body->>'callback_id')
ORDER BY r.ts, r.event_id
