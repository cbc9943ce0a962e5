-- Store a forecast: $1 tenant, then parallel arrays of queue, interval start (epoch ms), offered,
-- AHT (s), required agents, model and backtest accuracy.
INSERT INTO predictive_analytics AS p (client_id, queue_id, interval_start, offered, aht_s, required_agents, model,
                                       accuracy, made_at)
SELECT $1, q, to_timestamp(ms / 1000.0), o, a, r, m, acc, now()
FROM unnest($2::text[], $3::bigint[], $4::float8[], $5::float8[], $6::integer[], $7::text[], $8::float8[])
    AS t(q, ms, o, a, r, m, acc)
ON CONFLICT (client_id, queue_id, interval_start) DO UPDATE SET
    offered = EXCLUDED.offered, aht_s = EXCLUDED.aht_s, required_agents = EXCLUDED.required_agents,
    model = EXCLUDED.model, accuracy = EXCLUDED.accuracy, made_at = EXCLUDED.made_at
