-- A batch that a later one overtook (a connector posting from several connections) is split at ingest like one
-- that follows the head, without reading the agent's stored events: the agents row keeps a pair of adjacent
-- stored agent.state events of the agent, prev_* and next_* (no stored event of the agent lies between them,
-- and agent_state_time holds prev's span as [prev, next)). events_store.sql sets the pair in the upsert it
-- already makes of the row:
-- - a batch whose events of the agent all follow its head: the pair is (the old head, the batch's first event);
-- - a batch whose events all fall between prev and next: it takes prev's span [prev, next) off, adds the spans of
--   its events and fixes next's login or logout mark; the pair becomes (prev, the batch's first event), and the
--   old next is kept in after_* for that statement's RETURNING;
-- - any other batch: no pair is known (next_ms NULL) and agent_states_store.sql splits it, as before.
-- A new agent's pair is (none, its first event): no event of it comes before. next_event_id, next_state and
-- after_* are meaningful only while next_ms, respectively after_ms, is set. Rows of before this migration have no
-- pair until the agent's next batch that follows its head.
ALTER TABLE agents ADD COLUMN next_ms bigint, ADD COLUMN next_event_id text, ADD COLUMN next_state text,
    ADD COLUMN after_ms bigint, ADD COLUMN after_event_id text, ADD COLUMN after_state text;
