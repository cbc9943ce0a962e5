-- The login and logout marks that a batch's agent.state events unmade by giving a stored event a new predecessor
-- (events_store.sql returns them as unmarked_agent, unmarked_event). Run after events_store.sql in the same
-- transaction: this statement's snapshot holds the marks of the batches that statement waited for.
-- $1 tenant; $2, $3 the marks' agent_id and event_id.
DELETE FROM agent_state_marks AS m
USING unnest($2::text[], $3::text[]) AS k(agent_id, event_id)
WHERE m.client_id = $1 AND m.agent_id = k.agent_id AND m.event_id = k.event_id
