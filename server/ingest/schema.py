"""The one declaration of event kinds and counters: what an event carries, and what each one counts.

Event kinds: each declares its fields (the check each field gets, required or not), which
``server/ingest/events.py`` compiles into its validator. Counters: each declares its name, the
*fact* that moves it (a fact is what one event, or the second of two events, makes known for the
first time), the condition in words and as a small declarative form, the value it adds and its
unit, and where it is kept: the live Redis hashes (``queue``: a queue's day and 15-minute hashes
``qd``/``qi``; ``agent``: an agent's day hash ``ad``; ``tenant``: the tenant's day hash ``td``) and
the rollup rows (``performance_trends`` per 15 minutes and ``performance_daily`` per tenant day,
of dimension ``queue``, ``agent`` or ``tenant``).

Where the counting runs: ``server/live/scripts/apply.lua`` (live, written by hand) and two SQL
statements, ``sql/queries/events_store.sql`` (rollups at ingest) and ``sql/queries/history_rebuild.sql``
(rollups recomputed), whose per-counter expressions are the ``sql`` pair declared here: their counter
lists, like those of the history and report queries, are written by ``python -m server.ingest.schema_sql``.
``tests/test_schema.py`` reads those files, the migrated database's catalogue and the validator, and fails
when any of them disagrees with this module.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AGENT_STATES", "COUNTERS", "EVENTS", "EVENT_TYPES", "FACTS", "FEEDBACK_COUNTERS", "HOLD_CHANGE", "QUEUE_COUNTERS",
    "ROLLUP_COUNTERS", "Counter", "EventKind", "Fact", "Field", "counter_names",
]  # fmt: skip

AGENT_STATES = ("logged_out", "available", "on_call", "wrap_up", "break", "other")
# Where a counter is kept: live hash kinds, and rollup row dimensions.
PLACES = ("queue", "agent", "tenant")


@dataclass(frozen=True, slots=True)
class Field:
    """One field of an event: ``check`` names the validation events.py applies.

    Checks: ``id`` (1 to 128 printable characters), ``text`` (at most ``limit`` characters),
    ``state`` (one of AGENT_STATES), ``queues`` (a list of at most 100 queue ids), ``seconds``
    (a number ≥ 0 and < 86400), ``score`` (a number 0 to 5), ``criteria`` (name → score),
    ``bool``, ``int`` (an integer from ``low`` to ``high``), ``time`` (ISO-8601 with a zone or epoch ms, kept
    as ISO-8601 UTC), ``amount`` (a number from 0 to 1,000,000,000), ``choice`` (one of ``options``).
    """

    name: str
    check: str
    required: bool = False
    limit: int = 0
    low: int = 0
    high: int = 0
    options: tuple[str, ...] = ()


def _f(name: str, check: str, limit: int = 0, *, low: int = 0, high: int = 0) -> Field:
    return Field(name, check, False, limit, low, high)


def _r(name: str, check: str, options: tuple[str, ...] = ()) -> Field:
    return Field(name, check, True, options=options)


CALLBACK_OUTCOMES = ("reached", "no_answer", "cancelled")


@dataclass(frozen=True, slots=True)
class EventKind:
    """An event type: its fields (``agent_id``, ``queue_id``, ``call_id`` are optional ids everywhere).

    ``one_of``: at least one of these fields must be given; ``one_of_hint`` completes the error.
    """

    type: str
    fields: tuple[Field, ...]
    one_of: tuple[str, ...] = ()
    one_of_hint: str = ""

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)


EVENTS: tuple[EventKind, ...] = (
    EventKind("agent.state", (_r("agent_id", "id"), _r("state", "state"), _f("reason", "text", 128),
                              _f("name", "text", 200), _f("team", "id"), _f("queues", "queues"))),
    EventKind("call.queued", (_r("call_id", "id"), _r("queue_id", "id"))),
    EventKind("call.answered", (_r("call_id", "id"), _r("queue_id", "id"), _r("agent_id", "id"))),
    EventKind("call.abandoned", (_r("call_id", "id"), _r("queue_id", "id"), _f("reason", "text", 128))),
    EventKind("call.completed", (_r("call_id", "id"), _r("queue_id", "id"), _r("agent_id", "id"),
                                 _r("talk_s", "seconds"), _r("hold_s", "seconds"), _r("wrap_s", "seconds"),
                                 _f("resolved", "bool"), _f("disposition", "text", 128),
                                 _f("transferred", "bool"), _f("revenue", "amount"))),
    EventKind("quality.scored", (_r("call_id", "id"), _r("agent_id", "id"), _r("score", "score"),
                                 _f("criteria", "criteria"), _f("reviewer", "text", 128))),
    EventKind("csat.response", (_r("call_id", "id"), _f("csat", "int", low=1, high=5),
                                _f("nps", "int", low=0, high=10), _f("comment", "text", 2000)),
              one_of=("csat", "nps"), one_of_hint="csat 1-5, nps 0-10"),
    EventKind("call.offered", (_r("call_id", "id"), _r("queue_id", "id"), _r("agent_id", "id"))),
    EventKind("call.missed", (_r("call_id", "id"), _r("queue_id", "id"), _r("agent_id", "id"),
                              _f("ring_s", "seconds"))),
    EventKind("call.hold", (_r("call_id", "id"), _r("agent_id", "id"))),
    EventKind("call.unhold", (_r("call_id", "id"), _r("agent_id", "id"))),
    EventKind("callback.requested", (_r("callback_id", "id"), _r("queue_id", "id"), _f("due_ts", "time"))),
    EventKind("callback.completed", (_r("callback_id", "id"), _r("queue_id", "id"),
                                     _r("outcome", "choice", CALLBACK_OUTCOMES))),
)  # fmt: skip
EVENT_TYPES = tuple(kind.type for kind in EVENTS)


@dataclass(frozen=True, slots=True)
class Fact:
    """Something an event makes known once: a counter moves exactly when its fact becomes known.

    ``events``: the event kinds that can make it known (a wait is known when the second of its two
    ends arrives). ``bit``: its flag in ``call_legs.news`` (0 for facts that are not about a leg).
    ``group``: facts counted together, in one branch of events_store.sql's ``facts`` and one CTE of
    history_rebuild.sql.
    """

    name: str
    events: tuple[str, ...]
    bit: int
    group: str
    words: str


FACTS: dict[str, Fact] = {f.name: f for f in (
    Fact("queued", ("call.queued",), 1, "queued", "a queue leg's first call.queued"),
    Fact("answered", ("call.answered",), 2, "answered", "a queue leg's first call.answered"),
    Fact("abandoned", ("call.abandoned",), 4, "abandoned", "a queue leg's first call.abandoned"),
    Fact("completed", ("call.completed",), 8, "completed", "a queue leg's first call.completed"),
    Fact("answered_wait", ("call.queued", "call.answered"), 16, "answered",
         "the wait of an answered leg: both its queued and answered ts known, whichever came second"),
    Fact("abandoned_wait", ("call.queued", "call.abandoned"), 32, "abandoned",
         "the wait of an abandoned leg: both its queued and abandoned ts known, whichever came second"),
    Fact("csat", ("csat.response",), 0, "feedback", "a csat.response (once per event id)"),
    Fact("quality", ("quality.scored",), 0, "feedback", "a quality.scored (once per event id)"),
    Fact("ring", ("call.offered",), 0, "activity", "a call.offered (once per event id)"),
    Fact("miss", ("call.missed",), 0, "activity", "a call.missed (once per event id)"),
    Fact("hold", ("call.hold",), 0, "activity", "a call.hold (once per event id)"),
    Fact("callback_requested", ("callback.requested",), 0, "activity", "a callback.requested (once per event id)"),
    Fact("callback_completed", ("callback.completed",), 0, "activity", "a callback.completed (once per event id)"),
)}  # fmt: skip

# A condition: (value, operator, bound). Values: "wait" (ms, the fact's wait, never below 0),
# "resolved", "transferred", "csat", "nps", "revenue" (hundredths), "outcome"; operators "<=", "<", ">="
# against a number or a queue threshold ("sl": service level, "sa": short abandon, both in ms), "given"
# (present), "true" (present and true), "is" (equal to the bound, a word).
Condition = tuple[str, str, int | str]


@dataclass(frozen=True, slots=True)
class Counter:
    """One counter: it adds ``adds`` (1, or a named value of the fact) when ``fact`` becomes known and ``when`` holds."""

    name: str
    fact: str
    words: str
    # "count", "ms", "points" (sum of CSAT scores), "thousandths" (quality score × 1000) or "cents" (revenue × 100)
    unit: str
    live: tuple[str, ...]  # live hashes: "queue" (qd and qi), "agent" (ad), "tenant" (td)
    rollup: tuple[str, ...]  # performance_trends / performance_daily dimensions
    adds: int | str = 1
    when: Condition | None = None
    # What the counter adds, as SQL: (its value in a branch of events_store.sql's ``facts``, over ``waits`` or
    # ``feedback`` rows; its aggregate in history_rebuild.sql, over the rows of its fact). Written into those
    # files by server/ingest/schema_sql.py.
    sql: tuple[str, str] = ("", "")

    @property
    def events(self) -> tuple[str, ...]:
        """The event kinds whose arrival can move this counter."""
        return FACTS[self.fact].events


_Q, _QA, _TA = ("queue",), ("queue", "agent"), ("tenant", "agent")

COUNTERS: tuple[Counter, ...] = (
    Counter("offered", "queued", "calls queued", "count", _Q, _Q,
            sql=("1", "count(*)")),
    Counter("answered", "answered", "calls answered", "count", _Q, _QA,
            sql=("(news & 2 <> 0)::int", "count(*)")),
    Counter("abandoned", "abandoned", "calls abandoned", "count", _Q, _Q,
            sql=("(news & 4 <> 0)::int", "count(*)")),
    Counter("short_abandoned", "abandoned_wait", "abandoned after waiting less than the short-abandon threshold",
            "count", _Q, _Q, when=("wait", "<", "sa"),
            sql=("(news & 32 <> 0 AND wait_b < short_abandon_ms)::int",
                 "count(*) FILTER (WHERE wait_b < short_abandon_ms)")),
    Counter("answered_within_sl", "answered_wait", "answered after waiting at most the service-level threshold",
            "count", _Q, _QA, when=("wait", "<=", "sl"),
            sql=("(news & 16 <> 0 AND wait_a <= sl_ms)::int", "count(*) FILTER (WHERE wait_a <= sl_ms)")),
    Counter("abandoned_within_sl", "abandoned_wait", "abandoned after waiting at most the service-level threshold",
            "count", _Q, _Q, when=("wait", "<=", "sl"),
            sql=("(news & 32 <> 0 AND wait_b <= sl_ms)::int", "count(*) FILTER (WHERE wait_b <= sl_ms)")),
    Counter("handled", "completed", "calls completed", "count", _QA, _QA,
            sql=("1", "count(*)")),
    Counter("handle_ms", "completed", "talk + hold + wrap of completed calls", "ms", _QA, _QA, adds="handle",
            sql=("talk_ms + hold_ms + wrap_ms", "sum(talk_ms + hold_ms + wrap_ms)")),
    Counter("talk_ms", "completed", "talk time of completed calls", "ms", _Q, _QA, adds="talk",
            sql=("talk_ms", "sum(talk_ms)")),
    Counter("hold_ms", "completed", "hold time of completed calls", "ms", _Q, _QA, adds="hold",
            sql=("hold_ms", "sum(hold_ms)")),
    Counter("wrap_ms", "completed", "wrap-up time of completed calls", "ms", _Q, _QA, adds="wrap",
            sql=("wrap_ms", "sum(wrap_ms)")),
    Counter("wait_answered_ms", "answered_wait", "wait of answered calls", "ms", _Q, _QA, adds="wait",
            sql=("CASE WHEN news & 16 <> 0 THEN wait_a ELSE 0 END", "sum(wait_a)")),
    Counter("wait_abandoned_ms", "abandoned_wait", "wait of abandoned calls", "ms", _Q, _Q, adds="wait",
            sql=("CASE WHEN news & 32 <> 0 THEN wait_b ELSE 0 END", "sum(wait_b)")),
    Counter("resolved", "completed", "completed calls with resolved true", "count", _Q, _QA,
            when=("resolved", "true", 0),
            sql=("coalesce(resolved::int, 0)", "count(*) FILTER (WHERE resolved)")),
    Counter("resolved_given", "completed", "completed calls that say whether they were resolved", "count", _Q, _QA,
            when=("resolved", "given", 0),
            sql=("(resolved IS NOT NULL)::int", "count(resolved)")),
    Counter("transferred", "completed", "completed calls with transferred true", "count", _Q, _QA,
            when=("transferred", "true", 0),
            sql=("transferred::int", "count(*) FILTER (WHERE transferred)")),
    Counter("csat_n", "csat", "responses with a CSAT score", "count", _TA, _TA, when=("csat", "given", 0),
            sql=("(csat IS NOT NULL)::int", "count(csat)")),
    Counter("csat_sum", "csat", "sum of CSAT scores", "points", _TA, _TA, adds="csat", when=("csat", "given", 0),
            sql=("coalesce(csat, 0)", "sum(csat)")),
    Counter("csat_satisfied", "csat", "CSAT scores of 4 or 5", "count", _TA, _TA, when=("csat", ">=", 4),
            sql=("coalesce(csat >= 4, false)::int", "count(*) FILTER (WHERE csat >= 4)")),
    Counter("nps_n", "csat", "responses with an NPS score", "count", _TA, _TA, when=("nps", "given", 0),
            sql=("(nps IS NOT NULL)::int", "count(nps)")),
    Counter("nps_promoters", "csat", "NPS scores of 9 or 10", "count", _TA, _TA, when=("nps", ">=", 9),
            sql=("coalesce(nps >= 9, false)::int", "count(*) FILTER (WHERE nps >= 9)")),
    Counter("nps_detractors", "csat", "NPS scores of 0 to 6", "count", _TA, _TA, when=("nps", "<=", 6),
            sql=("coalesce(nps <= 6, false)::int", "count(*) FILTER (WHERE nps <= 6)")),
    Counter("quality_n", "quality", "quality reviews", "count", _TA, _TA,
            sql=("(quality IS NOT NULL)::int", "count(quality)")),
    Counter("quality_milli", "quality", "sum of quality scores, in thousandths", "thousandths", _TA, _TA,
            adds="score",
            sql=("coalesce(quality, 0)", "sum(quality)")),
    # Rings at agents, ring-no-answer, holds and callbacks (activity events, once per event id, for
    # the queue and the agent the event names), and revenue of completed calls (in hundredths, on the leg).
    Counter("rings", "ring", "calls offered to (ringing at) an agent", "count", _QA, _QA,
            sql=("(type = 'call.offered')::int", "count(*) FILTER (WHERE type = 'call.offered')")),
    Counter("missed", "miss", "calls an agent let ring out (ring-no-answer)", "count", _QA, _QA,
            sql=("(type = 'call.missed')::int", "count(*) FILTER (WHERE type = 'call.missed')")),
    Counter("missed_ring_ms", "miss", "ring time of missed calls", "ms", _QA, _QA, adds="ring",
            sql=("CASE WHEN type = 'call.missed' THEN ring_ms ELSE 0 END",
                 "coalesce(sum(ring_ms) FILTER (WHERE type = 'call.missed'), 0)")),
    Counter("holds", "hold", "calls put on hold", "count", _QA, _QA,
            sql=("(type = 'call.hold')::int", "count(*) FILTER (WHERE type = 'call.hold')")),
    Counter("callbacks_requested", "callback_requested", "callbacks requested", "count", _QA, _QA,
            sql=("(type = 'callback.requested')::int", "count(*) FILTER (WHERE type = 'callback.requested')")),
    Counter("callbacks_completed", "callback_completed", "callbacks completed (any outcome)", "count", _QA, _QA,
            sql=("(type = 'callback.completed')::int", "count(*) FILTER (WHERE type = 'callback.completed')")),
    Counter("callbacks_reached", "callback_completed", "callbacks completed with outcome reached", "count",
            _QA, _QA, when=("outcome", "is", "reached"),
            sql=("(type = 'callback.completed' AND outcome = 'reached')::int",
                 "count(*) FILTER (WHERE type = 'callback.completed' AND outcome = 'reached')")),
    Counter("revenue_cents", "completed", "revenue of completed calls, in hundredths", "cents", _QA, _QA,
            adds="revenue", sql=("coalesce(revenue_cents, 0)", "sum(revenue_cents)")),
    Counter("converted", "completed", "completed calls with revenue above 0", "count", _QA, _QA,
            when=("revenue", ">=", 1),
            sql=("coalesce(revenue_cents >= 1, false)::int", "count(*) FILTER (WHERE revenue_cents >= 1)")),
)  # fmt: skip


# A hold or unhold that comes in after its leg's completion changes that call's hold time (sql/015_hold_spans.sql):
# these counters take the change (call_legs.hold_news in events_store.sql), on the completion's interval and day,
# for its queue and agent; every other counter of the completion stays as it was counted.
HOLD_CHANGE: dict[str, str] = {"handle_ms": "hold_news", "hold_ms": "hold_news"}


def counter_names(*, live: str | None = None, rollup: str | None = None) -> tuple[str, ...]:
    """Counter names in declaration order, optionally only those kept in a live hash kind or rollup dimension."""
    return tuple(c.name for c in COUNTERS
                 if (live is None or live in c.live) and (rollup is None or rollup in c.rollup))


# The rollup tables' counter columns, in their order; a queue's counters; feedback (tenant) counters.
ROLLUP_COUNTERS = counter_names()
QUEUE_COUNTERS = counter_names(rollup="queue")
FEEDBACK_COUNTERS = counter_names(rollup="tenant")


def _check() -> None:
    """Refuse a declaration that contradicts itself (run at import: a typo fails every test at once)."""
    names = [c.name for c in COUNTERS]
    assert len(set(names)) == len(names), "a counter is declared twice"
    for c in COUNTERS:
        assert c.fact in FACTS, f"{c.name}: unknown fact {c.fact!r}"
        assert set(c.live) <= set(PLACES) and set(c.rollup) <= set(PLACES), f"{c.name}: unknown place"
        assert c.unit in ("count", "ms", "points", "thousandths", "cents"), f"{c.name}: unknown unit {c.unit!r}"
    for fact in FACTS.values():
        assert set(fact.events) <= set(EVENT_TYPES), f"{fact.name}: unknown event kind"


_check()
