-- Agent-state history (012_agent_states.sql) of the new agent.state events events_store.sql did not split
-- itself (it returns their agents: a late event, or an agent without a head), in the same transaction, after it
-- and after agent_state_lock.sql: this statement's snapshot then holds every committed event of these agents
-- (a batch of the same agent waited for the others on its agents row) and this batch's own.
-- $1 tenant; $2, $3, $4 the events' event_id, agent_id and ts (epoch ms); $5 the tenant's time zone, $6 its
-- day start in minutes after midnight.
--
-- A state holds from its ts until the agent's next agent.state (by ts, then event_id). Per agent, its events
-- from the stored one just before its earliest new event to the one just after its latest are read twice:
-- without the new events (ver -1: the spans kept so far) and with them (ver 1). The difference of their spans,
-- cut into pieces (agent_state_pieces), is added to agent_state_time: an event landing between two known
-- ones takes its predecessor's old span off and adds the two new ones. The last span stays open (not stored),
-- and so do logged_out spans. Logins and logouts the new events make or unmake are written to or deleted
-- from agent_state_marks the same way.
WITH st_ends AS MATERIALIZED (  -- per agent: its new event ids, the stored events just before and just after them
    SELECT s.agent_id, s.ids, p.ts AS p_ts, n.ts AS n_ts
    FROM (SELECT agent_id, array_agg(event_id) AS ids, to_timestamp(min(ts_ms) / 1000.0) AS lo,
                 to_timestamp(max(ts_ms) / 1000.0) AS hi
          FROM unnest($2::text[], $3::text[], $4::bigint[]) AS t(event_id, agent_id, ts_ms)
          GROUP BY 1) AS s
    LEFT JOIN LATERAL (  -- the last day's partitions first: an agent's predecessor is nearly always there
        (SELECT ts FROM events WHERE client_id = $1 AND type = 'agent.state' AND agent_id = s.agent_id
           AND ts < s.lo AND ts >= s.lo - interval '1 day' ORDER BY ts DESC LIMIT 1)
        UNION ALL
        (SELECT ts FROM events WHERE client_id = $1 AND type = 'agent.state' AND agent_id = s.agent_id
           AND ts < s.lo ORDER BY ts DESC LIMIT 1)
        LIMIT 1) AS p ON true
    LEFT JOIN LATERAL (  -- no event is stored later than a few minutes past now
        SELECT ts FROM events WHERE client_id = $1 AND type = 'agent.state' AND agent_id = s.agent_id
          AND ts > s.hi AND ts < greatest(now(), s.hi) + interval '1 hour' ORDER BY ts LIMIT 1) AS n ON true
), st_chain AS (  -- the stored events from that predecessor to that successor, without the new ones (ver -1)
                  -- and with them (ver 1)
    SELECT w.agent_id, v.ver, x.ts_ms, x.event_id, x.state, x.reason, w.p_ts IS NULL AS from_start
    FROM st_ends AS w
    CROSS JOIN LATERAL (
        SELECT round(extract(epoch FROM ev.ts) * 1000)::bigint AS ts_ms, ev.event_id, ev.body->>'state' AS state,
               CASE WHEN ev.body->>'state' IN ('break', 'other') THEN coalesce(ev.body->>'reason', '') ELSE '' END
                   AS reason
        FROM events AS ev
        WHERE ev.client_id = $1 AND ev.type = 'agent.state' AND ev.agent_id = w.agent_id
          AND ev.ts >= coalesce(w.p_ts, '-infinity')
          AND ev.ts <= coalesce(w.n_ts, now() + interval '1 hour')
        OFFSET 0) AS x  -- not pulled up into a join: one index range per agent, not the tenant's every event
    CROSS JOIN (VALUES (-1), (1)) AS v(ver)
    WHERE v.ver = 1 OR x.event_id <> ALL (w.ids)
), st_spans AS MATERIALIZED (  -- each state's span [a, b) in either chain; the last one is open (b NULL)
    SELECT agent_id, ver, event_id, state, reason, ts_ms AS a, lead(ts_ms) OVER w AS b,
           lag(state) OVER w AS prev_state, lag(ts_ms) OVER w IS NOT NULL OR from_start AS known
    FROM st_chain
    WINDOW w AS (PARTITION BY agent_id, ver ORDER BY ts_ms, event_id COLLATE "C")
), st_pieces AS (  -- the closed spans of logged-in states cut at the 15-minute grid and at tenant day starts; a span
                  -- inside one 15-minute cell, with day starts on the grid, is one piece (no function call)
    SELECT agent_id, state, reason, a - a % 900000 AS lo, ver * (b - a) AS ms
    FROM st_spans
    WHERE b > a AND state <> 'logged_out' AND b <= a - a % 900000 + 900000 AND $6 % 15 = 0
    UNION ALL
    SELECT s.agent_id, s.state, s.reason, k.lo, s.ver * k.ms AS ms
    FROM st_spans AS s CROSS JOIN LATERAL agent_state_pieces(s.a, s.b, $5, $6) AS k
    WHERE s.b > s.a AND s.state <> 'logged_out' AND NOT (s.b <= s.a - s.a % 900000 + 900000 AND $6 % 15 = 0)
), st_rolled AS (
    INSERT INTO agent_state_time AS r (client_id, agent_id, interval_start, state, reason, ms)
    SELECT $1, agent_id, to_timestamp(lo / 1000.0), state, reason, sum(ms)
    FROM st_pieces
    GROUP BY agent_id, lo, state, reason
    HAVING sum(ms) <> 0
    ORDER BY agent_id, lo, state, reason
    ON CONFLICT (client_id, agent_id, interval_start, state, reason) DO UPDATE SET ms = r.ms + excluded.ms
), st_marks AS MATERIALIZED (  -- logins and logouts that this batch made (1) or unmade (-1)
    SELECT agent_id, event_id, a, CASE WHEN state = 'logged_out' THEN 'logout' ELSE 'login' END AS kind,
           sum(ver) AS change
    FROM st_spans
    WHERE known AND CASE WHEN state = 'logged_out' THEN coalesce(prev_state <> 'logged_out', false)
                         ELSE prev_state IS NULL OR prev_state = 'logged_out' END
    GROUP BY 1, 2, 3, 4
    HAVING sum(ver) <> 0
), st_marked AS (
    INSERT INTO agent_state_marks (client_id, agent_id, event_id, at, kind)
    SELECT $1, agent_id, event_id, to_timestamp(a / 1000.0), kind FROM st_marks WHERE change > 0
    ON CONFLICT DO NOTHING
), st_unmarked AS (
    DELETE FROM agent_state_marks AS m USING st_marks AS k
    WHERE m.client_id = $1 AND m.agent_id = k.agent_id AND m.event_id = k.event_id AND k.change < 0
)
SELECT count(*) AS marks FROM st_marks
