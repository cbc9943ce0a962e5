-- Store a batch of events; return the event_ids that were new (the others
-- were already stored: duplicates). $1 tenant; $2.. parallel arrays (ts as epoch ms).
WITH input AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[])
        AS t(event_id, type, ts_ms, queue_id, agent_id, call_id, body)
), fresh AS (
    INSERT INTO event_ids (client_id, event_id)
    SELECT $1, event_id FROM input
    ON CONFLICT DO NOTHING
    RETURNING event_id
)
INSERT INTO events (client_id, event_id, type, ts, queue_id, agent_id, call_id, body)
SELECT $1, i.event_id, i.type, to_timestamp(i.ts_ms / 1000.0), i.queue_id, i.agent_id, i.call_id, i.body::jsonb
FROM input i JOIN fresh f USING (event_id)
RETURNING event_id
