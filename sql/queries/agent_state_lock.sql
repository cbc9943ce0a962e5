-- Serialise the batches that write one agent's state history ($1 tenant, $2 its agents): agent_states_store.sql
-- reads an agent's stored agent.state events to split their spans, so two batches of the same agent must
-- not both read before either has written. Their upserts of the agents row in events_store.sql already order
-- them; this lock states it. Held to the end of the transaction; taken in one order (by key), so batches
-- sharing agents never deadlock on them. Run after events_store.sql, in its transaction.
-- JIT off for the rest of the transaction: agent_states_store.sql's estimates (an index range per agent over
-- every partition) would make PostgreSQL compile it, which costs far more than running it. Generic plans for
-- the rest of the transaction too: planning agent_states_store.sql over every day partition took longer than
-- running it (2.6 ms against 3.6 ms for a batch of 60 agents), and each connection runs it too seldom for
-- PostgreSQL to switch to a generic plan of its own; the partitions are pruned when it runs.
SELECT set_config('jit', 'off', true), set_config('plan_cache_mode', 'force_generic_plan', true),
       count(pg_advisory_xact_lock(hashtext('wallboard.agent_state'), k))
FROM (SELECT DISTINCT hashtext($1 || '/' || a) AS k FROM unnest($2::text[]) AS a ORDER BY 1) AS keys
