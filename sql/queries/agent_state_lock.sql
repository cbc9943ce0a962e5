-- Serialise the batches that write one agent's state history ($1 tenant, $2 its agents): agent_states_store.sql
-- reads an agent's stored agent.state events to split their spans, so two batches of the same agent must
-- not both read before either has written. Their upserts of the agents row in events_store.sql already order
-- them; this lock states it. Held to the end of the transaction; taken in one order (by key), so batches
-- sharing agents never deadlock on them. Run after events_store.sql, in its transaction.
-- JIT off for the rest of the transaction: agent_states_store.sql's estimates (an index range per agent over
-- every partition) would make PostgreSQL compile it, which costs far more than running it.
SELECT set_config('jit', 'off', true), count(pg_advisory_xact_lock(hashtext('wallboard.agent_state'), k))
FROM (SELECT DISTINCT hashtext($1 || '/' || a) AS k FROM unnest($2::text[]) AS a ORDER BY 1) AS keys
