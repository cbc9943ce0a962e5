-- The per-call record (agent_metrics) of completed legs whose hold time a late hold or unhold changed
-- (events_store.sql returns them): hold_s and handle_s as the leg now counts them. Run after events_store.sql
-- in the same transaction, so it reads the legs as that statement left them.
-- $1 tenant; $2, $3 the legs' call_id and queue_id.
UPDATE agent_metrics AS m
SET hold_s = l.hold_ms / 1000.0, handle_s = (l.talk_ms + l.hold_ms + l.wrap_ms) / 1000.0
FROM unnest($2::text[], $3::text[]) AS h(call_id, queue_id)
JOIN call_legs AS l ON l.client_id = $1 AND l.call_id = h.call_id AND l.queue_id = h.queue_id
WHERE m.client_id = $1 AND m.call_id = l.call_id AND m.queue_id = l.queue_id AND m.completed_at = l.completed_at
