-- Each agent's latest agent.state when it began before $3: the open state, which no rollup holds (readers
-- count it up to now). $1 tenant, $2 agents (NULL: all the agents table knows), $3 the period's end.
-- agents.seen_at is the ts of the agent's newest agent.state (events_store.sql): one partition is read per agent.
SELECT a.agent_id, l.ts, l.body->>'state' AS state,
       CASE WHEN l.body->>'state' IN ('break', 'other') THEN coalesce(l.body->>'reason', '') ELSE '' END AS reason
FROM agents AS a
CROSS JOIN LATERAL (SELECT ts, body FROM events
                    WHERE client_id = $1 AND type = 'agent.state' AND agent_id = a.agent_id AND ts = a.seen_at
                    ORDER BY event_id COLLATE "C" DESC LIMIT 1) AS l
WHERE a.client_id = $1 AND ($2::text[] IS NULL OR a.agent_id = ANY ($2)) AND a.seen_at < $3
