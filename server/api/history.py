"""The history endpoints: `/api/analytics/performance/…`, `/calls/…`, `/satisfaction`."""

from __future__ import annotations

import time
import uuid

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import audit
from server.api.context import principal, scope_of, services
from server.api.responses import success
from server.core.auth import READ_ALL, READ_LIVE
from server.core.db import query
from server.core.errors import BadRequest, Forbidden
from server.history import formulas as metrics
from server.history.figures import (
    RANKABLE,
    agent_directory,
    agent_figures,
    completion_figures,
    counters,
    describe,
    figures,
    filters_of,
    iso_at,
    timeline_figures,
)
from server.history.period import bad
from server.ingest.events import EventError, parse_event


async def performance_summary(request: Request) -> Response:
    """``GET /api/analytics/performance/summary``: the period's totals (tenant, a queue, a team or an agent)."""
    scope = await scope_of(request, READ_LIVE)
    dimension, rows, feedback = await figures(scope, "history_by_key")
    total = metrics.total(map(counters, [*rows, *feedback]))
    return success({**scope.period.describe(), **filters_of(scope), **describe(scope, dimension, total)})


async def performance_trends(request: Request) -> Response:
    """``GET /api/analytics/performance/trends``: one entry per bucket of the granularity, empty ones included."""
    scope = await scope_of(request, READ_LIVE)
    dimension, rows, feedback = await figures(scope, "history_by_bucket")
    by_bucket: dict[int, dict[str, int]] = {}
    for row in [*rows, *feedback]:
        metrics.add(by_bucket.setdefault(row["bucket"], {}), counters(row))
    data = [{**scope.period.bucket(i), **describe(scope, dimension, by_bucket.get(i, {}))}
            for i in range(1, len(scope.period.bounds))]
    total = metrics.total(by_bucket.values())
    return success(data, statistics={**scope.period.describe(), **filters_of(scope),
                                     **describe(scope, dimension, total)})


async def performance_agents(request: Request) -> Response:
    """``GET /api/analytics/performance/agents``: one entry per agent with calls in the period."""
    scope = await scope_of(request, READ_LIVE)
    rows = await scope.rows("history_by_key", "agent", await scope.agent_keys())
    names = await agent_directory(scope)
    data = [{"agent_id": r["key"], **names.get(r["key"], {"name": None, "team": None}), **agent_figures(counters(r))}
            for r in rows][:scope.limit]
    total = metrics.total(map(counters, rows))
    return success(data, statistics={**scope.period.describe(), **agent_figures(total)})


async def performance_top(request: Request) -> Response:
    """``GET /api/analytics/performance/top-performers?metric=handled&limit=10``: the best agents by one metric."""
    scope = await scope_of(request, READ_ALL)
    metric = request.query_params.get("metric", "handled")
    if metric not in RANKABLE:
        raise bad("metric", f'"{metric[:32]}" cannot rank agents: expected one of {", ".join(RANKABLE)}')
    limit_ = min(scope.limit, 100) if "limit" in request.query_params else 10
    rows = await scope.rows("history_by_key", "agent", await scope.agent_keys())
    names = await agent_directory(scope)
    ranked = [{"agent_id": r["key"], **names.get(r["key"], {"name": None, "team": None}), **agent_figures(counters(r))}
              for r in rows]
    ranked = [a for a in ranked if a[metric] is not None and a["handled"] + a["answered"] + a["csat_responses"]
              + a["quality_reviews"] > 0]
    ranked.sort(key=lambda a: (-a[metric] if RANKABLE[metric] else a[metric], a["agent_id"]))
    for rank, agent in enumerate(ranked, 1):
        agent["rank"] = rank
    return success(ranked[:limit_], statistics={**scope.period.describe(), "metric": metric,
                                                "higher_is_better": RANKABLE[metric]})


async def agent_detailed(request: Request) -> Response:
    """``GET /api/analytics/performance/agent/{agent_id}/detailed``: totals, per bucket, recent calls and reviews."""
    scope = await scope_of(request, READ_LIVE, granularity="day")
    agent_id = request.path_params["agent_id"]
    if not scope.who.may_see_agent(agent_id):
        raise Forbidden("an agent token sees only its own figures", code="agent_scope")
    rows = await scope.rows("history_by_bucket", "agent", [agent_id])
    by_bucket = {r["bucket"]: counters(r) for r in rows}
    start, end = scope.period.bounds_dt[0], scope.period.bounds_dt[-1]
    async with scope.db.tenant(scope.who.tenant) as conn:
        who = await conn.fetchrow("SELECT name, team FROM agents WHERE client_id = $1 AND agent_id = $2",
                                  scope.who.tenant, agent_id)
        calls = await conn.fetch(query("agent_recent_calls"), scope.who.tenant, agent_id, start, end)
        reviews = await conn.fetch(query("quality_list"), scope.who.tenant, [agent_id], start, end, 20)
    return success({
        "agent_id": agent_id, "name": who["name"] if who else None, "team": who["team"] if who else None,
        **scope.period.describe(), **agent_figures(metrics.total(by_bucket.values())),
        "buckets": [{**scope.period.bucket(i), **agent_figures(by_bucket.get(i, {}))}
                    for i in range(1, len(scope.period.bounds))],
        "recent_calls": [{"call_id": c["call_id"], "queue_id": c["queue_id"], "completed_at": iso_at(c["completed_at"]),
                          "handle_s": c["handle_s"], "talk_s": c["talk_s"], "resolved": c["resolved"],
                          "transferred": c["transferred"]} for c in calls],
        "quality": [{"call_id": r["call_id"], "score": float(r["score"]), "reviewer": r["reviewer"],
                     "scored_at": iso_at(r["scored_at"])} for r in reviews],
    })


async def calls_timeline(request: Request) -> Response:
    """``GET /api/analytics/calls/timeline``: call volumes and waits per bucket (15 minutes for a day)."""
    scope = await scope_of(request, READ_ALL, granularity="15m" if "from" not in request.query_params else None)
    rows = await scope.rows("history_by_bucket", "queue", [scope.queue_id] if scope.queue_id else None)
    by_bucket = {r["bucket"]: counters(r) for r in rows}
    formula = scope.settings.for_queue(scope.queue_id).sl_formula if scope.queue_id else scope.settings.sl_formula
    data = [{**scope.period.bucket(i), **timeline_figures(by_bucket.get(i, {}), formula)}
            for i in range(1, len(scope.period.bounds))]
    return success(data, statistics={**scope.period.describe(), **filters_of(scope),
                                     **timeline_figures(metrics.total(by_bucket.values()), formula)})


async def performance_sectors(request: Request) -> Response:
    """``GET /api/analytics/performance/sectors``: every queue and every team over the period."""
    scope = await scope_of(request, READ_ALL)
    queues = await scope.rows("history_by_key", "queue", None)
    agents = await scope.rows("history_by_key", "agent", None)
    names = await agent_directory(scope)
    teams: dict[str, dict[str, int]] = {}
    for row in agents:
        team = names.get(row["key"], {}).get("team")
        if team is not None:
            metrics.add(teams.setdefault(team, {}), counters(row))
    data = [{"kind": "queue", "id": r["key"],
             **metrics.queue_figures(counters(r), scope.settings.for_queue(r["key"]).sl_formula)} for r in queues]
    data += [{"kind": "team", "id": team, **agent_figures(c)} for team, c in sorted(teams.items())]
    return success(data, statistics=scope.period.describe())


async def calls_completion(request: Request) -> Response:
    """``GET /api/analytics/calls/completion``: offered, answered and abandoned calls per queue."""
    scope = await scope_of(request, READ_ALL)
    rows = await scope.rows("history_by_key", "queue", [scope.queue_id] if scope.queue_id else None)
    data = [{"queue_id": r["key"], **completion_figures(counters(r))} for r in rows]
    return success(data, statistics={**scope.period.describe(),
                                     **completion_figures(metrics.total(map(counters, rows)))})


async def satisfaction(request: Request) -> Response:
    """``GET /api/analytics/satisfaction``: CSAT and NPS over the period, per bucket and in total."""
    scope = await scope_of(request, READ_LIVE)
    keys = await scope.agent_keys() if scope.by_agent else None
    rows = await scope.rows("history_by_bucket", "agent" if scope.by_agent else "tenant", keys)
    by_bucket: dict[int, dict[str, int]] = {}
    for row in rows:
        metrics.add(by_bucket.setdefault(row["bucket"], {}), counters(row))
    data = [{**scope.period.bucket(i), **metrics.feedback_figures(by_bucket.get(i, {}))}
            for i in range(1, len(scope.period.bounds))]
    return success(data, statistics={**scope.period.describe(), **filters_of(scope),
                                     **metrics.feedback_figures(metrics.total(by_bucket.values()))})


async def quality_list(request: Request) -> Response:
    """``GET /api/analytics/calls/quality``: the period's reviews, newest first."""
    scope = await scope_of(request, READ_LIVE)
    keys = await scope.agent_keys() if scope.by_agent else None
    start, end = scope.period.bounds_dt[0], scope.period.bounds_dt[-1]
    async with scope.db.tenant(scope.who.tenant) as conn:
        rows = await conn.fetch(query("quality_list"), scope.who.tenant, keys, start, end, scope.limit)
    data = [{"score_id": r["score_id"], "call_id": r["call_id"], "agent_id": r["agent_id"], "score": float(r["score"]),
             "criteria": orjson.loads(r["criteria"]) if r["criteria"] else None, "reviewer": r["reviewer"],
             "source": r["source"], "scored_at": iso_at(r["scored_at"])} for r in rows]
    return success(data, statistics=scope.period.describe())


async def quality_summary(request: Request) -> Response:
    """``GET /api/analytics/calls/quality/summary``: mean score per agent and in total."""
    scope = await scope_of(request, READ_LIVE)
    rows = [r for r in await scope.rows("history_by_key", "agent", await scope.agent_keys()) if r["quality_n"]]
    data = [{"agent_id": r["key"], "quality_score": metrics.quality_score(counters(r)), "reviews": r["quality_n"]}
            for r in rows][:scope.limit]
    total = metrics.total(map(counters, rows))
    return success(data, statistics={**scope.period.describe(), "quality_score": metrics.quality_score(total),
                                     "reviews": total.get("quality_n", 0)})


async def quality_record(request: Request) -> Response:
    """``POST /api/analytics/calls/quality`` (supervisor): one review, stored as a ``quality.scored`` event.

    Going through ingest makes the review count everywhere a scored event counts: the live
    view, the rollups, the reports. The reviewer is the token's ``sub``.
    """
    who = principal(request, READ_ALL)
    try:
        body = orjson.loads(await request.body())  # not json.loads: a deeply nested body is a 400, not a RecursionError
    except orjson.JSONDecodeError:
        raise BadRequest("body: expected a JSON object with call_id, agent_id and score", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("body: expected a JSON object with call_id, agent_id and score", code="invalid_body")
    unknown = set(body) - {"call_id", "agent_id", "score", "criteria", "ts"}
    if unknown:
        field = sorted(unknown)[0]
        raise BadRequest(f"{field}: not a field of a quality review (call_id, agent_id, score, criteria, ts)",
                         code="invalid_field", details={"field": field, "reason": "unknown field"})
    event = {"event_id": f"api:quality:{uuid.uuid4()}", "type": "quality.scored",
             "ts": body.get("ts", int(time.time() * 1000)), **body, "reviewer": who.sub or who.role.value}
    svc = services(request)
    try:
        parsed = parse_event(event, window_days=(await svc.settings_store.get(who.tenant)).ingest_window_days)
    except EventError as exc:
        raise BadRequest(exc.message, code="invalid_field", details=exc.details) from None
    await svc.ingestor.ingest(who.tenant, [(0, parsed)], [])
    svc.hub.renderings.changed(who.tenant)  # the poster's next read here sees its events
    await audit.request_entry(request, who, "quality.record", {"score_id": parsed.event_id, "call_id": parsed.call_id,
                                                               "agent_id": parsed.agent_id})
    return success({"score_id": parsed.event_id, "call_id": parsed.call_id, "agent_id": parsed.agent_id,
                    "score": parsed.body["score"], "reviewer": event["reviewer"]}, status=201)


routes = [
    Route("/api/analytics/performance/summary", performance_summary, methods=["GET"]),
    Route("/api/analytics/performance/trends", performance_trends, methods=["GET"]),
    Route("/api/analytics/performance/agents", performance_agents, methods=["GET"]),
    Route("/api/analytics/performance/sectors", performance_sectors, methods=["GET"]),
    Route("/api/analytics/performance/top-performers", performance_top, methods=["GET"]),
    Route("/api/analytics/performance/agent/{agent_id}/detailed", agent_detailed, methods=["GET"]),
    Route("/api/analytics/calls/timeline", calls_timeline, methods=["GET"]),
    Route("/api/analytics/calls/completion", calls_completion, methods=["GET"]),
    Route("/api/analytics/calls/quality", quality_list, methods=["GET"]),
    Route("/api/analytics/calls/quality", quality_record, methods=["POST"]),
    Route("/api/analytics/calls/quality/summary", quality_summary, methods=["GET"]),
    Route("/api/analytics/satisfaction", satisfaction, methods=["GET"]),
]
