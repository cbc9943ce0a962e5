-- Quality reviews in time order: $1 tenant, $2 from, $3 to, $4 one agent (NULL: all).
SELECT scored_at, score_id, call_id, agent_id, score, reviewer, source, criteria::text AS criteria
FROM call_quality_scores
WHERE client_id = $1 AND scored_at >= $2 AND scored_at < $3 AND ($4::text IS NULL OR agent_id = $4)
ORDER BY scored_at, score_id
