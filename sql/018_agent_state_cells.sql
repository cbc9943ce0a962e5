-- agent_state_pieces (012_agent_states.sql) with the common case apart: a tenant whose day starts on the 15-minute
-- grid (day_start % 15 = 0) has its pieces in the grid's cells, one generate_series row each, without the per-cell
-- look for a day start inside the cell (two time-zone conversions and a VALUES pair per cell: 2.7 ms of a batch of
-- 500 events, 370 pieces, in its plan timed by auto_explain; 0.4 ms this way).
-- The pieces are the same; a tenant day starting off the grid is cut as before. Still one SQL statement the planner
-- inlines (a UNION ALL whose other branch a constant day_start, or a day start on the grid, leaves empty).
CREATE OR REPLACE FUNCTION agent_state_pieces(a bigint, b bigint, zone text, day_start integer)
RETURNS TABLE (lo bigint, ms bigint) LANGUAGE sql STABLE AS $$
    SELECT c.cell, least(b, c.cell + 900000) - greatest(a, c.cell)
    FROM generate_series(a - a % 900000, b - 1, 900000) AS c(cell)
    WHERE day_start % 15 = 0
    UNION ALL
    SELECT k.lo, least(b, k.hi) - greatest(a, k.lo)
    FROM generate_series(a - a % 900000, b - 1, 900000) AS c(cell)
    CROSS JOIN LATERAL (SELECT CASE WHEN ((to_timestamp(c.cell / 1000.0) AT TIME ZONE zone)
                                          - make_interval(mins => day_start))::date
                                      <> ((to_timestamp((c.cell + 899999) / 1000.0) AT TIME ZONE zone)
                                          - make_interval(mins => day_start))::date
                                    THEN c.cell + (day_start % 15) * 60000 END AS cut) AS d
    CROSS JOIN LATERAL (VALUES (c.cell, coalesce(d.cut, c.cell + 900000)), (d.cut, c.cell + 900000)) AS k(lo, hi)
    WHERE day_start % 15 <> 0 AND k.lo IS NOT NULL AND k.hi > a AND k.lo < b
$$;
