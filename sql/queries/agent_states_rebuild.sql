-- Recompute a tenant's agent-state history over a time range from its agent.state events: the
-- agent_state_time rows whose interval_start lies in [$2, $3) and the agent_state_marks in it; and each
-- agent's head (agents.state_*).
-- $1 tenant, $2 from, $3 to (timestamptz, on the 15-minute grid or at tenant day starts), $4 the tenant's
-- time zone, $5 its day start in minutes after midnight (as events_store.sql gets them).
--
-- The same spans and pieces as events_store.sql keeps incrementally: a state holds from its ts until the
-- agent's next agent.state (by ts, then event_id); the last one stays open and is not stored; logged_out
-- time is not stored; pieces are 15-minute intervals cut where a tenant day starts. Each agent's chain is
-- its events in the range plus its last one before and its first one after (the agents table lists them).
-- One statement: rows of the range no span supports any more are deleted, the others overwritten. Needs
-- DELETE on agent_state_time: run it as the tables' owner with wallboard.tenant set.
WITH chain AS MATERIALIZED (
    SELECT agent_id, ts, event_id, body FROM events
    WHERE client_id = $1 AND type = 'agent.state' AND ts >= $2 AND ts < $3
    UNION ALL
    SELECT a.agent_id, b.ts, b.event_id, b.body FROM agents AS a
    CROSS JOIN LATERAL (SELECT ts, event_id, body FROM events
                        WHERE client_id = $1 AND type = 'agent.state' AND agent_id = a.agent_id AND ts < $2
                        ORDER BY ts DESC, event_id COLLATE "C" DESC LIMIT 1) AS b
    WHERE a.client_id = $1
    UNION ALL
    SELECT a.agent_id, n.ts, n.event_id, n.body FROM agents AS a
    CROSS JOIN LATERAL (SELECT ts, event_id, body FROM events
                        WHERE client_id = $1 AND type = 'agent.state' AND agent_id = a.agent_id AND ts >= $3
                        ORDER BY ts, event_id COLLATE "C" LIMIT 1) AS n
    WHERE a.client_id = $1
), spans AS MATERIALIZED (
    SELECT agent_id, event_id, ts, body->>'state' AS state,
           CASE WHEN body->>'state' IN ('break', 'other') THEN coalesce(body->>'reason', '') ELSE '' END AS reason,
           round(extract(epoch FROM ts) * 1000)::bigint AS a,
           round(extract(epoch FROM lead(ts) OVER w) * 1000)::bigint AS b,
           lag(body->>'state') OVER w AS prev_state
    FROM chain
    WINDOW w AS (PARTITION BY agent_id ORDER BY ts, event_id COLLATE "C")
), pieces AS (
    SELECT s.agent_id, s.state, s.reason, k.lo, k.ms
    FROM spans AS s CROSS JOIN LATERAL agent_state_pieces(s.a, s.b, $4, $5) AS k
    WHERE s.b > s.a AND s.state <> 'logged_out'
), rows AS MATERIALIZED (
    SELECT agent_id, to_timestamp(lo / 1000.0) AS interval_start, state, reason, sum(ms) AS ms
    FROM pieces
    GROUP BY 1, 2, 3, 4
    HAVING to_timestamp(lo / 1000.0) >= $2 AND to_timestamp(lo / 1000.0) < $3
), marks AS MATERIALIZED (
    SELECT agent_id, event_id, ts AS at, CASE WHEN state = 'logged_out' THEN 'logout' ELSE 'login' END AS kind
    FROM spans
    WHERE ts >= $2 AND ts < $3
      AND CASE WHEN state = 'logged_out' THEN coalesce(prev_state <> 'logged_out', false)
               ELSE prev_state IS NULL OR prev_state = 'logged_out' END
), stale_marks AS (
    DELETE FROM agent_state_marks AS m
    WHERE m.client_id = $1 AND m.at >= $2 AND m.at < $3
      AND (m.agent_id, m.event_id) NOT IN (SELECT agent_id, event_id FROM marks)
), marked AS (
    INSERT INTO agent_state_marks AS m (client_id, agent_id, event_id, at, kind)
    SELECT $1, agent_id, event_id, at, kind FROM marks
    ON CONFLICT (client_id, agent_id, event_id) DO UPDATE SET at = excluded.at, kind = excluded.kind
), heads AS (  -- each agent's head: its latest event (agents.seen_at is its ts), whatever the range
    UPDATE agents AS a
    SET state_ms = round(extract(epoch FROM l.ts) * 1000)::bigint, state_event_id = l.event_id,
        state = l.body->>'state',
        state_reason = CASE WHEN l.body->>'state' IN ('break', 'other') THEN coalesce(l.body->>'reason', '') ELSE '' END,
        next_ms = NULL, after_ms = NULL  -- no pair of adjacent events is known until the next batch (017_agent_state_gap.sql)
    FROM agents AS g
    CROSS JOIN LATERAL (SELECT ts, event_id, body FROM events
                        WHERE client_id = $1 AND type = 'agent.state' AND agent_id = g.agent_id AND ts = g.seen_at
                        ORDER BY event_id COLLATE "C" DESC LIMIT 1) AS l
    WHERE g.client_id = $1 AND a.client_id = $1 AND a.agent_id = g.agent_id
), stale AS (
    DELETE FROM agent_state_time AS t
    WHERE t.client_id = $1 AND t.interval_start >= $2 AND t.interval_start < $3
      AND (t.agent_id, t.interval_start, t.state, t.reason) NOT IN
          (SELECT agent_id, interval_start, state, reason FROM rows)
)
INSERT INTO agent_state_time AS t (client_id, agent_id, interval_start, state, reason, ms)
SELECT $1, agent_id, interval_start, state, reason, ms FROM rows
ORDER BY agent_id, interval_start, state, reason
ON CONFLICT (client_id, agent_id, interval_start, state, reason) DO UPDATE SET ms = excluded.ms
