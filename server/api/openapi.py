"""``GET /openapi.json``: the OpenAPI 3.1 document of every HTTP endpoint (API.md "Operating it").

Built from one declarative table, :data:`OPERATIONS`: a row per method and path with its
roles, parameters, request body and the shape of its ``data``. Every operation also
documents the API.md error envelope for 4xx, ``429 rate_limited`` with its headers and
503. tests/test_openapi.py checks that every route of the app has its row, so a new
route without one fails the suite; schemathesis checks the answers against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.responses import JSON
from server.core.boards import TILE_METRICS
from server.history.period import GRANULARITIES, MAX_LIMIT
from server.history.reports import COMPUTED, REPORTS

Schema = dict[str, Any]

API_VERSION = "1"  # of the contract (API.md, the WebSocket's wallboard.v1), not of the package

ANY: Schema = {}
OBJECT: Schema = {"type": "object"}
LIST: Schema = {"type": "array", "items": {"type": "object"}}
TEXT: Schema = {"type": "string"}
ID: Schema = {"type": "string", "minLength": 1, "maxLength": 128}
NULLABLE_TEXT: Schema = {"type": ["string", "null"]}


def query(name: str, schema: Schema, description: str, *, required: bool = False) -> Schema:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def path(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


PERIOD = (
    query("from", TEXT, "start: an ISO date or time (the tenant's time zone when no offset); default today"),
    query("to", TEXT, "end: an ISO date or time; default the end of today"),
    query("granularity", {"type": "string", "enum": list(GRANULARITIES)}, "bucket size"),
    query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "most rows returned"),
)
FILTERS = (
    query("queue_id", ID, "only this queue"),
    query("agent_id", ID, "only this agent (an agent token: itself only)"),
    query("team", ID, "only the agents of this team"),
)
AGENT_ID = path("agent_id", ID, "the agent's id")

EVENT: Schema = {
    "type": "object", "required": ["event_id", "type", "ts"],
    "properties": {"event_id": ID, "type": TEXT, "ts": {"type": ["string", "integer"]}, "call_id": ID,
                   "queue_id": ID, "agent_id": ID, "callback_id": ID},
    "additionalProperties": True,
}
INGEST_OUTCOME: Schema = {
    "type": "object", "required": ["accepted", "duplicates", "rejected"],
    "properties": {"accepted": {"type": "integer"}, "duplicates": {"type": "integer"},
                   "rejected": {"type": "array", "items": {"type": "object"}}, "lines": {"type": "integer"}},
}
HEALTH: Schema = {
    "type": "object", "required": ["status", "postgres", "redis", "live"],
    "properties": {"status": {"enum": ["ok", "degraded"]}, "postgres": {"enum": ["ok", "down"]},
                   "redis": {"enum": ["ok", "down", "rebuilding"]}, "live": {"enum": ["ok", "stale"]}},
}
WHOAMI: Schema = {
    "type": "object", "required": ["client_id", "role", "sub", "expires_at"],
    "properties": {"client_id": TEXT, "role": {"enum": ["agent", "supervisor", "admin", "ingest"]},
                   "sub": NULLABLE_TEXT, "expires_at": TEXT},
}
QUALITY_REVIEW: Schema = {
    "type": "object", "required": ["call_id", "agent_id", "score"],
    "properties": {"call_id": ID, "agent_id": ID, "score": {"type": "number", "minimum": 0, "maximum": 1},
                   "criteria": OBJECT, "ts": {"type": ["string", "integer"]}},
    "additionalProperties": False,
}

SCHEDULE_BODY: Schema = {
    "type": "object", "required": ["report", "frequency", "at", "destination"], "additionalProperties": False,
    "properties": {
        "report": {"type": "string", "enum": sorted(REPORTS)},
        "parameters": {"type": "object", "additionalProperties": False,
                       "properties": {"queue_id": ID, "agent_id": ID, "team": ID,
                                      "granularity": {"type": "string", "enum": list(GRANULARITIES)},
                                      "period": {"type": "string", "enum": ["previous", "current"]}}},
        "frequency": {"type": "string", "enum": ["daily", "weekly", "monthly"]},
        "at": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
               "description": "local time in the tenant's zone"},
        "weekday": {"type": "integer", "minimum": 1, "maximum": 7, "description": "weekly: 1 = Monday"},
        "month_day": {"type": "integer", "minimum": 1, "maximum": 28, "description": "monthly"},
        "destination": {"oneOf": [
            {"type": "object", "required": ["type", "url"], "additionalProperties": False,
             "properties": {"type": {"const": "webhook"}, "url": {"type": "string", "format": "uri", "maxLength": 2048}}},
            {"type": "object", "required": ["type", "to"], "additionalProperties": False,
             "properties": {"type": {"const": "email"}, "to": {"type": "string", "format": "email"}}}]},
    },
}
SCHEDULE: Schema = {
    "type": "object",
    "properties": {"id": TEXT, "report": TEXT, "parameters": OBJECT, "frequency": TEXT, "at": TEXT,
                   "weekday": {"type": ["integer", "null"]}, "month_day": {"type": ["integer", "null"]},
                   "destination": OBJECT, "created_by": TEXT, "created_at": TEXT, "next_run_at": NULLABLE_TEXT,
                   "last_run_at": NULLABLE_TEXT,
                   "last_status": {"enum": ["delivered", "failed", "running", None]},
                   "last_error": NULLABLE_TEXT, "last_attempts": {"type": ["integer", "null"]},
                   "secret": {"type": "string", "description": "only in the answer to the POST that made it"}},
}
SCHEDULE_ID = path("schedule_id", {"type": "string", "format": "uuid"}, "the schedule's id")
TILE: Schema = {
    "type": "object", "required": ["metric"], "additionalProperties": False,
    "properties": {"metric": {"enum": list(TILE_METRICS)}, "queue_ids": {"type": "array", "items": ID},
                   "label": {"type": "string", "maxLength": 120}},
}
BOARD: Schema = {
    "type": "object", "required": ["title", "tiles"], "additionalProperties": False,
    "properties": {"title": {"type": "string", "minLength": 1, "maxLength": 120},
                   "tiles": {"type": "array", "items": TILE, "minItems": 1, "maxItems": 24},
                   "queues": {"type": "array", "items": ID}, "locale": TEXT, "sound": {"type": "boolean"},
                   "rotate_s": {"type": "integer", "minimum": 5, "maximum": 3600}},
}
BOARD_OUT: Schema = {**BOARD, "additionalProperties": True, "required": ["name", *BOARD["required"]]}
BOARD_NAME = path("name", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}, "the board's name")
ALERT: Schema = {
    "type": "object", "required": ["alert_id", "queue_id", "metric", "level", "active", "raised_at"],
    "properties": {"alert_id": {"type": "integer"}, "queue_id": NULLABLE_TEXT, "metric": TEXT,
                   "level": {"enum": ["amber", "red"]}, "observed": {"type": ["number", "null"]},
                   "threshold": {"type": ["number", "null"]}, "active": {"type": "boolean"}, "raised_at": TEXT,
                   "cleared_at": NULLABLE_TEXT, "acked_at": NULLABLE_TEXT, "acked_by": NULLABLE_TEXT},
}
ALERT_LIST: Schema = {"type": "array", "items": ALERT}
SECONDS: Schema = {"type": "object", "additionalProperties": {"type": "number"}}
AGENT_STATES: Schema = {
    "type": "array",
    "items": {"type": "object",
              "required": ["agent_id", "start", "end", "states", "reasons", "logged_in_s", "first_login",
                           "last_logout", "occupancy", "utilization", "missed"],
              "properties": {"agent_id": ID, "start": TEXT, "end": TEXT, "states": SECONDS, "reasons": SECONDS,
                             "logged_in_s": {"type": "number"}, "first_login": NULLABLE_TEXT,
                             "last_logout": NULLABLE_TEXT, "occupancy": {"type": ["number", "null"]},
                             "utilization": {"type": ["number", "null"]}, "missed": {"type": "integer"}}},
}


@dataclass(frozen=True)
class Op:
    """One operation: method, path, what it does, who may call it, its input and its ``data``."""

    method: str
    path: str
    summary: str
    roles: str | None  # None: no token
    params: tuple[Schema, ...] = ()
    body: dict[str, Schema] = field(default_factory=dict)  # media type → schema
    data: Schema = field(default_factory=dict)
    ok: int = 200
    etag: bool = False
    extra: dict[int, str] = field(default_factory=dict)  # further success statuses → description


CALLS: Schema = {
    "type": "object", "required": ["as_of", "waiting", "callbacks"],
    "properties": {
        "as_of": TEXT,
        "waiting": {"type": "array", "items": {
            "type": "object", "required": ["call_id", "queue_id", "queued_at", "position"],
            "properties": {"call_id": TEXT, "queue_id": TEXT, "queued_at": TEXT, "position": {"type": "integer"}}}},
        "callbacks": {"type": "array", "items": {
            "type": "object", "required": ["callback_id", "queue_id", "requested_at", "due_ts"],
            "properties": {"callback_id": TEXT, "queue_id": NULLABLE_TEXT}}},
    },
}

READERS, LIVE, ADMIN, INGEST = "supervisor, admin", "agent, supervisor, admin", "admin", "ingest, admin"
OPERATIONS: tuple[Op, ...] = (
    Op("GET", "/api/metrics/health", "PostgreSQL and Redis, each ok or down; 503 when PostgreSQL is down", None,
       data=HEALTH),
    Op("GET", "/api/auth/whoami", "the verified identity of the caller's token", "any role", data=WHOAMI),
    Op("POST", "/api/events", "ingest a batch of events (JSON array or NDJSON); answers once committed", INGEST,
       body={"application/json": {"type": "array", "items": EVENT}, "application/x-ndjson": TEXT},
       data=INGEST_OUTCOME, extra={207: "some events rejected (see data.rejected)"}),
    Op("POST", "/api/ingest/asterisk/queue-log", "ingest Asterisk queue_log lines", INGEST,
       body={"text/plain": TEXT}, data=INGEST_OUTCOME, extra={207: "some lines rejected (see data.rejected)"}),
    Op("GET", "/api/settings", "every setting of the caller's tenant, defaults included", ADMIN, data=OBJECT),
    Op("PUT", "/api/settings", "change some settings (audited); answers with every setting", ADMIN,
       body={"application/json": OBJECT}, data=OBJECT),
    Op("DELETE", "/api/tenant", "erase every row and Redis key of the caller's tenant (logged); needs "
       "?confirm=<client_id>", ADMIN, params=(query("confirm", ID, "the token's client_id, repeated", required=True),),
       data={"type": "object", "required": ["client_id", "rows", "keys", "seconds"],
             "properties": {"client_id": TEXT, "rows": {"type": "integer"}, "keys": {"type": "integer"},
                            "seconds": {"type": "number"}}}),
    Op("GET", "/api/metrics/live", "the tenant overview", READERS, data=OBJECT, etag=True),
    Op("GET", "/api/metrics/queue/status", "every queue's live figures", READERS, data=LIST, etag=True),
    Op("GET", "/api/metrics/agents/status", "every agent's live state; an agent token sees itself", LIVE,
       params=(query("team", ID, "only this team"), query("queue_id", ID, "only agents of this queue"),
               query("state", ID, "only agents in this state")), data=LIST, etag=True),
    Op("GET", "/api/metrics/agents/{agent_id}/status", "one agent's live state", LIVE, params=(AGENT_ID,),
       data=OBJECT, etag=True),
    Op("GET", "/api/metrics/calls/waiting", "the calls view: each waiting call and each pending callback", READERS,
       params=(query("queue_id", TEXT, "only these queues (comma-separated ids)"),), data=CALLS, etag=True),
    Op("GET", "/api/analytics/staffing/erlang-c", "Erlang C figures for N agents, or the agents required", LIVE,
       params=(query("calls", {"type": "number", "minimum": 0, "maximum": 1_000_000}, "calls per interval", required=True),
               query("aht_s", {"type": "number", "minimum": 1, "maximum": 86_400}, "average handle time", required=True),
               query("interval_s", {"type": "number", "minimum": 60, "maximum": 86_400}, "interval length (900)"),
               query("sl_threshold_s", {"type": "number", "minimum": 0, "maximum": 86_400}, "service-level threshold"),
               query("agents", {"type": "integer", "minimum": 0}, "figures for this many agents"),
               query("target_sl", {"type": "number", "minimum": 0, "maximum": 0.9999}, "agents required for it"),
               query("max_occupancy", {"type": "number", "minimum": 0.01, "maximum": 1}, "with target_sl"),
               query("shrinkage", {"type": "number", "minimum": 0, "maximum": 0.95}, "with target_sl")),
       data=OBJECT),
    Op("GET", "/api/analytics/performance/summary", "the period's totals", LIVE, params=PERIOD + FILTERS, data=OBJECT),
    Op("GET", "/api/analytics/performance/trends", "one entry per bucket", LIVE, params=PERIOD + FILTERS, data=LIST),
    Op("GET", "/api/analytics/performance/agents", "one entry per agent", LIVE, params=PERIOD + FILTERS, data=LIST),
    Op("GET", "/api/analytics/performance/sectors", "every queue and team", READERS, params=PERIOD, data=LIST),
    Op("GET", "/api/analytics/performance/top-performers", "the best agents by one metric", READERS,
       params=PERIOD + FILTERS + (query("metric", TEXT, "the metric to rank by (handled)"),), data=LIST),
    Op("GET", "/api/analytics/performance/agent/{agent_id}/detailed", "an agent's totals, buckets, calls, reviews",
       LIVE, params=(AGENT_ID, *PERIOD), data=OBJECT),
    Op("GET", "/api/analytics/performance/scorecards", "agents over the last 30 whole days", LIVE, data=LIST),
    Op("GET", "/api/analytics/agents/states", "agent-state seconds, logins, occupancy and missed calls per agent "
       "and bucket", LIVE, params=PERIOD + FILTERS[1:], data=AGENT_STATES),
    Op("GET", "/api/analytics/calls/timeline", "call volumes and waits per bucket", READERS, params=PERIOD + FILTERS,
       data=LIST),
    Op("GET", "/api/analytics/calls/completion", "offered, answered, abandoned per queue", READERS,
       params=PERIOD + FILTERS, data=LIST),
    Op("GET", "/api/analytics/calls/quality", "the period's quality reviews, newest first", LIVE,
       params=PERIOD + FILTERS, data=LIST),
    Op("POST", "/api/analytics/calls/quality", "record one quality review (the reviewer is the token's sub)", READERS,
       body={"application/json": QUALITY_REVIEW}, data=OBJECT, ok=201),
    Op("GET", "/api/analytics/calls/quality/summary", "mean quality score per agent", LIVE, params=PERIOD + FILTERS,
       data=LIST),
    Op("GET", "/api/analytics/satisfaction", "CSAT and NPS per bucket and in total", LIVE, params=PERIOD + FILTERS,
       data=LIST),
    Op("GET", "/api/analytics/costs", "costs per bucket and queue; totals", READERS, params=PERIOD + FILTERS, data=LIST),
    Op("GET", "/api/analytics/revenue", "revenue, revenue per call, conversion rate and cost per call per bucket "
       "and queue; totals by queue, agent, team and bucket", READERS, params=PERIOD + FILTERS, data={
           "type": "array", "items": {"type": "object", "required": ["start", "end", "queue_id", "revenue"],
                                      "properties": {"queue_id": ID, "handled": {"type": "integer"},
                                                     "converted": {"type": "integer"}, "revenue": {"type": "number"},
                                                     "revenue_per_call": {"type": ["number", "null"]},
                                                     "conversion_rate": {"type": ["number", "null"]},
                                                     "cost_per_call": {"type": ["number", "null"]}}}}),
    Op("GET", "/api/analytics/predictions", "the stored forecast with its accuracy", READERS,
       params=PERIOD + (query("queue_id", ID, "only this queue"),), data=LIST),
    Op("POST", "/api/analytics/predictions/refresh", "refit the tenant's forecast now", ADMIN, data=LIST),
    Op("GET", "/api/analytics/anomalies", "flagged intervals and threshold alerts, newest first", READERS,
       params=PERIOD + (query("queue_id", ID, "only this queue"),
                        query("kind", TEXT, "only this kind of anomaly")), data=LIST),
    Op("GET", "/api/analytics/audit", "the audit log, newest first", ADMIN, params=PERIOD, data=LIST),
    Op("GET", "/api/reports/{name}", "a report as JSON, or streamed CSV (format=csv or Accept: text/csv)", READERS,
       params=(path("name", {"type": "string", "enum": sorted({*REPORTS, *COMPUTED})}, "the report"), *PERIOD, *FILTERS,
               query("format", {"type": "string", "enum": ["json", "csv"]}, "json (default) or csv")),
       data=LIST),
    Op("GET", "/api/report-schedules", "the tenant's report schedules with their next run and last delivery",
       ADMIN, data={"type": "array", "items": SCHEDULE}),
    Op("POST", "/api/report-schedules", "a new report schedule (audited); the answer shows its signing secret once",
       ADMIN, body={"application/json": SCHEDULE_BODY}, data={**SCHEDULE, "required": ["id", "secret"]}, ok=201),
    Op("DELETE", "/api/report-schedules/{schedule_id}", "delete one report schedule (audited)", ADMIN,
       params=(SCHEDULE_ID,), data=OBJECT),
    Op("POST", "/api/report-schedules/{schedule_id}/run", "deliver a schedule at the scheduler's next look (audited)",
       ADMIN, params=(SCHEDULE_ID,), data=OBJECT, ok=202),
    Op("POST", "/api/alert-webhooks/secret", "a new signing secret for the alert webhooks, shown once (audited)", ADMIN,
       data={"type": "object", "required": ["secret"], "properties": {"secret": TEXT}}, ok=201),
    Op("GET", "/api/alerts", "open threshold alerts and those raised in the last day, newest first", READERS,
       data=ALERT_LIST),
    Op("POST", "/api/alerts/{id}/ack", "acknowledge an alert (audited; the first ack stays)", READERS,
       params=(path("id", {"type": "integer", "minimum": 1}, "the alert_id"),), data=ALERT),
    Op("GET", "/api/boards", "every board (named wallboard layout) of the tenant", READERS,
       data={"type": "array", "items": BOARD_OUT}),
    Op("PUT", "/api/boards", "replace all boards with the body's (name → board; audited)", ADMIN,
       body={"application/json": {"type": "object", "additionalProperties": BOARD}},
       data={"type": "array", "items": BOARD_OUT}),
    Op("GET", "/api/boards/{name}", "one board", READERS, params=(BOARD_NAME,), data=BOARD_OUT),
    Op("PUT", "/api/boards/{name}", "create or replace one board (audited)", ADMIN, params=(BOARD_NAME,),
       body={"application/json": BOARD}, data=BOARD_OUT),
    Op("DELETE", "/api/boards/{name}", "delete one board (audited)", ADMIN, params=(BOARD_NAME,), data=OBJECT),
    Op("GET", "/openapi.json", "this document", None),
    Op("GET", "/metrics", "Prometheus text format of the process (every worker's, merged, under serve --workers); "
       "no token unless WALLBOARD_METRICS_TOKEN is set, then that as a bearer token", None),
)

ERROR: Schema = {
    "type": "object", "required": ["success", "error"],
    "properties": {"success": {"const": False}, "data": ANY,
                   "error": {"type": "object", "required": ["code", "message"],
                             "properties": {"code": {"type": "string", "pattern": "^[a-z0-9_]+$"},
                                            "message": {"type": "string"}, "details": ANY}}},
}
RATE_HEADERS = {name: {"description": text, "schema": {"type": "integer"}} for name, text in (
    ("Retry-After", "seconds until the budget has room"), ("RateLimit-Limit", "the budget's requests per window"),
    ("RateLimit-Remaining", "requests left in the window"), ("RateLimit-Reset", "seconds until the window resets"))}


def envelope(data: Schema) -> Schema:
    return {"type": "object", "required": ["success", "data"],
            "properties": {"success": {"const": True}, "data": data, "count": {"type": "integer", "minimum": 0},
                           "statistics": {"type": "object"}}}


def json_content(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def operation(op: Op) -> dict[str, Any]:
    """The OpenAPI operation object of one row."""
    success: dict[str, Any] = {"description": "success"}
    if op.path == "/openapi.json":
        success["content"] = json_content({"type": "object", "required": ["openapi", "paths"]})
    elif op.path == "/api/metrics/health":
        success["content"] = json_content(HEALTH)
    elif op.path == "/metrics":
        success["content"] = {"text/plain": {"schema": TEXT}}
    else:
        success["content"] = json_content(envelope(op.data))
        if op.path == "/api/reports/{name}":
            success["content"]["text/csv"] = {"schema": TEXT}
    responses: dict[str, Any] = {str(op.ok): success}
    for status, description in op.extra.items():
        responses[str(status)] = {**success, "description": description}
    if op.etag:
        success["headers"] = {"ETag": {"description": "the state's tag", "schema": TEXT}}
        responses["304"] = {"description": "not modified (If-None-Match matched)"}
    if op.path == "/api/metrics/health":
        responses["503"] = {"description": "PostgreSQL is down", "content": json_content(HEALTH)}
    elif op.path == "/metrics":
        responses["401"] = {"description": "WALLBOARD_METRICS_TOKEN is set and the bearer token is not it",
                            "content": json_content(ERROR)}
    elif op.roles is not None:
        responses["4XX"] = {"description": "bad request, bad token (401), role (403), unknown (404), too large "
                                           "(413), media type (415), nothing accepted (422)",
                            "content": json_content(ERROR)}
        responses["429"] = {"description": "past the tenant's or token's request budget (rate_limited)",
                            "headers": RATE_HEADERS, "content": json_content(ERROR)}
        responses["503"] = {"description": "a backing service is unavailable or busy; retry after Retry-After",
                            "content": json_content(ERROR)}
    out: dict[str, Any] = {"summary": op.summary, "operationId": f"{op.method.lower()}{op.path}",
                           "parameters": list(op.params), "responses": responses}
    if op.roles is None:
        out["security"] = []
    else:
        out["description"] = f"roles: {op.roles}"
    if op.body:
        out["requestBody"] = {"required": True, "content": {media: {"schema": schema} for media, schema in op.body.items()}}
    return out


@cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once per process)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Wallboard", "version": API_VERSION,
                 "description": "Real-time contact-center wallboard server; the contract is API.md."},
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        "security": [{"bearer": []}],
    }


async def openapi_json(request: Request) -> Response:
    """``GET /openapi.json`` (no token): this server's OpenAPI 3.1 document."""
    return JSON(document(), headers={"Cache-Control": "public, max-age=300"})


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
