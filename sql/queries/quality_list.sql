-- Quality reviews of a period, newest first: $1 tenant, $2 agents to keep (NULL: all), $3 from, $4 to, $5 limit.
SELECT score_id, call_id, agent_id, score, criteria, reviewer, source, scored_at
FROM call_quality_scores
WHERE client_id = $1 AND ($2::text[] IS NULL OR agent_id = ANY ($2)) AND scored_at >= $3 AND scored_at < $4
ORDER BY scored_at DESC, score_id
LIMIT $5
