-- Agent scorecards of the last 30 whole days: a materialized view for dashboards and leaderboards,
-- refreshed concurrently on a schedule the server owns (server/scorecards.py).
--
-- A materialized view cannot carry row-level security, so the application role never reads it:
-- it reads agent_scorecards_mine, a security-barrier view of the transaction's tenant only.
-- The refresh reads every tenant's rows as the owner through a policy that applies to the owner
-- alone and only while refresh_scorecards() runs (a superuser owner needs none of this).
DO $$
BEGIN
    EXECUTE format('CREATE POLICY scorecard_refresh ON performance_daily FOR SELECT TO %I '
                   'USING (current_setting(''wallboard.refresh'', true) = ''scorecards'')', current_user);
END
$$;

CREATE MATERIALIZED VIEW agent_scorecards AS
SELECT client_id, key AS agent_id, min(day) AS first_day, max(day) AS last_day, count(*)::integer AS days,
       sum(answered)::bigint AS answered, sum(handled)::bigint AS handled, sum(handle_ms)::bigint AS handle_ms,
       sum(talk_ms)::bigint AS talk_ms, sum(hold_ms)::bigint AS hold_ms, sum(wrap_ms)::bigint AS wrap_ms,
       sum(resolved)::bigint AS resolved, sum(resolved_given)::bigint AS resolved_given,
       sum(transferred)::bigint AS transferred, sum(csat_n)::bigint AS csat_n, sum(csat_sum)::bigint AS csat_sum,
       sum(csat_satisfied)::bigint AS csat_satisfied, sum(nps_n)::bigint AS nps_n,
       sum(nps_promoters)::bigint AS nps_promoters, sum(nps_detractors)::bigint AS nps_detractors,
       sum(quality_n)::bigint AS quality_n, sum(quality_milli)::bigint AS quality_milli,
       now() AS refreshed_at
FROM performance_daily
WHERE dimension = 'agent' AND day >= current_date - 30 AND day < current_date
GROUP BY client_id, key
WITH NO DATA;
CREATE UNIQUE INDEX agent_scorecards_key ON agent_scorecards (client_id, agent_id);

CREATE VIEW agent_scorecards_mine WITH (security_barrier) AS
SELECT * FROM agent_scorecards WHERE client_id = current_setting('wallboard.tenant', true);
GRANT SELECT ON agent_scorecards_mine TO :app_role;

-- Refresh, unless another process is doing it right now (then false). The first refresh of an
-- unpopulated view cannot be concurrent.
CREATE FUNCTION refresh_scorecards() RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('wallboard.refresh_scorecards')) THEN
        RETURN false;
    END IF;
    PERFORM set_config('wallboard.refresh', 'scorecards', true);
    IF (SELECT relispopulated FROM pg_class WHERE oid = 'agent_scorecards'::regclass) THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY agent_scorecards;
    ELSE
        REFRESH MATERIALIZED VIEW agent_scorecards;
    END IF;
    PERFORM set_config('wallboard.refresh', '', true);
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION refresh_scorecards() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refresh_scorecards() TO :app_role;
