"""``GET /api/reports/{name}``: CSV exports streamed in constant memory.

CSV with ``Accept: text/csv`` or ``?format=csv``; otherwise the same rows as JSON, at most
``limit`` of them. A CSV is read in pages of ``PAGE_ROWS`` rows, each page in its own short tenant
transaction (row-level security applies) and keyed on the report's order (keyset pagination, so a
page costs the same at the end of a big export as at its start), and written as it is read: a
million rows cost no more memory than a thousand, and no PostgreSQL connection is held while a
page waits for the client to read it. The trade-off: an export is not one snapshot; rows committed
while it runs may appear in a later page. Every export is recorded in the audit log before the
first byte goes out; how many run at once is bounded by :class:`ExportSlots`.

Reports: ``calls`` (one row per handled call), ``agent-performance`` (agent × day),
``queue-intervals`` (queue × 15-minute interval), ``quality`` (reviews), ``satisfaction``
(CSAT/NPS responses); ``agent-states`` (agent × bucket: seconds per state, break reasons, first login,
last logout, occupancy, utilization, missed calls) is put together from several rollups and answered whole.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from server.core.db import query
from server.history import agent_states
from server.history import formulas as metrics
from server.history.figures import Scope, agent_figures, counters
from server.history.period import iso

PAGE_ROWS = 2000  # rows fetched per transaction and written per chunk
SLICE_ROWS = 50  # rows formatted per turn of the event loop (about half a millisecond)
JSON_DEFAULT_LIMIT = 1000


@dataclass(frozen=True)
class Report:
    sql_name: str
    columns: tuple[str, ...]
    row: Callable[[asyncpg.Record, Scope], Sequence[Any]]
    args: Callable[[Scope], tuple[Any, ...]]
    order: tuple[str, ...]  # the query's ORDER BY columns, unique per row: the key of a page
    rollup: bool = False  # over whole days, read the per-day rollups (Scope.rollup)

    def sql(self, scope: Scope) -> str:
        return scope.rollup(self.sql_name) if self.rollup else query(self.sql_name)

    def page(self, scope: Scope, rows: int, *, after: bool) -> str:
        """The query of one page: the first ``rows`` rows, or those after the key passed last."""
        nargs = len(self.args(scope))
        keys = ", ".join(self.order)
        where = ""
        if after:
            params = ", ".join(f"${nargs + 1 + i}" for i in range(len(self.order)))
            where = f"WHERE ({keys}) > ({params})"
        return f"SELECT * FROM ({self.sql(scope)}) AS report {where} ORDER BY {keys} LIMIT {int(rows)}"


def _ts(value: datetime | None) -> str:
    return "" if value is None else iso(int(value.timestamp() * 1000))


def _keys(scope: Scope) -> tuple[Any, ...]:
    return (scope.who.tenant, scope.period.bounds_dt[0], scope.period.bounds_dt[-1], scope.agent_id)


def _calls_row(r: asyncpg.Record, _: Scope) -> Sequence[Any]:
    return (r["call_id"], r["queue_id"], r["agent_id"], r["queued_at_iso"] or "", r["answered_at_iso"] or "",
            r["completed_at_iso"], r["talk_s"], r["hold_s"], r["wrap_s"], r["handle_s"],
            "" if r["resolved"] is None else str(r["resolved"]).lower(), str(r["transferred"]).lower(),
            r["disposition"] or "")


def _agent_row(r: asyncpg.Record, scope: Scope) -> Sequence[Any]:
    f = agent_figures(counters(r))
    return (scope.period.bucket(r["bucket"])["start"], r["key"], r["name"] or "", r["team"] or "",
            *(_cell(f[k]) for k in AGENT_COLUMNS))


def _queue_row(r: asyncpg.Record, scope: Scope) -> Sequence[Any]:
    f = metrics.queue_figures(counters(r), scope.settings.for_queue(r["key"]).sl_formula)
    return (_ts(r["interval_start"]), r["key"], *(_cell(f[k]) for k in QUEUE_COLUMNS))


def _cell(value: Any) -> Any:
    return "" if value is None else round(value, 6) if isinstance(value, float) else value


AGENT_COLUMNS = ("answered", "handled", "aht_s", "talk_avg_s", "hold_avg_s", "wrap_avg_s", "fcr", "transfer_rate",
                 "csat", "nps", "quality_score")
QUEUE_COLUMNS = ("offered", "answered", "abandoned", "short_abandoned", "answered_within_sl", "abandoned_within_sl",
                 "handled", "service_level", "asa_s", "aht_s", "abandon_rate", "fcr", "transfer_rate")

REPORTS: dict[str, Report] = {
    "calls": Report("report_calls", ("call_id", "queue_id", "agent_id", "queued_at", "answered_at", "completed_at",
                                     "talk_s", "hold_s", "wrap_s", "handle_s", "resolved", "transferred",
                                     "disposition"), _calls_row, _keys, ("completed_at", "call_id", "queue_id")),
    "agent-performance": Report("report_agent_days", ("day", "agent_id", "name", "team", *AGENT_COLUMNS), _agent_row,
                                lambda s: (s.who.tenant, s.period.params, s.agent_id), ("bucket", "key"), rollup=True),
    "queue-intervals": Report("report_queue_intervals", ("interval_start", "queue_id", *QUEUE_COLUMNS), _queue_row,
                              lambda s: (s.who.tenant, s.period.bounds_dt[0], s.period.bounds_dt[-1], s.queue_id),
                              ("interval_start", "key")),
    "quality": Report("report_quality", ("scored_at", "score_id", "call_id", "agent_id", "score", "reviewer", "source",
                                         "criteria"),
                      lambda r, _: (_ts(r["scored_at"]), r["score_id"], r["call_id"], r["agent_id"], float(r["score"]),
                                    r["reviewer"] or "", r["source"], r["criteria"] or ""), _keys,
                      ("scored_at", "score_id")),
    "satisfaction": Report("report_satisfaction", ("responded_at", "event_id", "call_id", "agent_id", "csat", "nps",
                                                   "comment"),
                           lambda r, _: (_ts(r["responded_at"]), r["event_id"], r["call_id"] or "",
                                         r["agent_id"] or "", _cell(r["csat"]), _cell(r["nps"]), r["comment"] or ""),
                           _keys, ("responded_at", "event_id")),
}


async def _agent_state_rows(scope: Scope) -> list[Sequence[Any]]:
    return [agent_states.csv_cells(row) for row in await agent_states.agent_states(scope)]


# Reports put together in Python from several rollups, answered whole: name → (columns, rows of a scope).
COMPUTED: dict[str, tuple[tuple[str, ...], Callable[[Scope], Awaitable[list[Sequence[Any]]]]]] = {
    "agent-states": (agent_states.CSV_COLUMNS, _agent_state_rows),
}


def csv_text(columns: Sequence[str], rows: list[Sequence[Any]]) -> bytes:
    """A whole CSV (header, then the rows), cells made safe as :func:`stream` makes them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows([safe_cell(value) for value in row] for row in rows)
    return buffer.getvalue().encode()


def span(scope: Scope) -> str:
    """The period in a file name: first and last tenant day (inclusive), else the UTC times."""
    days = scope.period.days
    if days is not None:
        return f"{days[0].isoformat()}_{(days[-1] - timedelta(days=1)).isoformat()}"
    described = scope.period.describe()
    return f"{described['from'].replace(':', '')}_{described['to'].replace(':', '')}"


async def stream(scope: Scope, spec: Report, page_rows: int = PAGE_ROWS, *,
                 turn: asyncio.Lock) -> AsyncIterator[bytes]:
    """The header, then one chunk per page; each page is read in its own transaction, which has
    ended (its connection back in the pool) before the chunk is handed to the client.

    The process's exports (and scheduled reports) share ``turn`` (:attr:`ExportSlots.turn`): they format
    one slice at a time, in turn, however many run, and every other task (another tenant's requests)
    runs between two slices."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(spec.columns)
    yield _drain(buffer)
    args = spec.args(scope)
    after: tuple[Any, ...] = ()
    while True:
        async with scope.db.tenant(scope.who.tenant) as conn:
            # A generic plan cannot see that the key bounds leave a few rows: it sorts the whole rest.
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            rows = await conn.fetch(spec.page(scope, page_rows, after=bool(after)), *args, *after)
        for start in range(0, len(rows), SLICE_ROWS):
            async with turn:
                for record in rows[start:start + SLICE_ROWS]:
                    writer.writerow([safe_cell(value) for value in spec.row(record, scope)])
                # The turn is held until the loop has run everything else that was ready: the next export's
                # slice comes in a later turn of the loop, not in this one.
                await asyncio.sleep(0)
        if rows:
            yield _drain(buffer)
        if len(rows) < page_rows:
            return
        after = tuple(rows[-1][key] for key in spec.order)


class ExportSlots:
    """How many CSV exports run at once: at most ``per_tenant`` of one tenant and ``per_process`` in all.

    Per process, in memory: with N processes the deployment runs at most N × ``per_process``. Past
    either budget the export is refused at once (429 ``rate_limited``) rather than queued, so a
    tenant that asks for more only waits on its own retries.
    """

    def __init__(self, per_tenant: int, per_process: int) -> None:
        self.per_tenant = per_tenant
        self.per_process = per_process
        self.running: dict[str, int] = {}
        # Held while an export formats a slice of rows, until the loop's next turn: ten exports filling the
        # buffers of stalled readers, each formatting its slice in every turn, held the loop for seconds and
        # another tenant's one-event POSTs waited 0.4-0.9 s; one slice per turn, they wait under 0.1 s.
        self.turn = asyncio.Lock()

    def take(self, tenant: str) -> bool:
        """Take a slot for ``tenant``; False when a budget is spent. Give it back with :meth:`give`."""
        if self.running.get(tenant, 0) >= self.per_tenant or sum(self.running.values()) >= self.per_process:
            return False
        self.running[tenant] = self.running.get(tenant, 0) + 1
        return True

    def give(self, tenant: str) -> None:
        left = self.running.get(tenant, 0) - 1
        if left > 0:
            self.running[tenant] = left
        else:
            self.running.pop(tenant, None)


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text starting like a formula gets a leading ``'``.

    OWASP's CSV-injection rule. Only text is escaped: numbers (negative ones too) stay numbers, so
    a figure is still a figure in the sheet; an id such as ``-7`` is text and comes out ``'-7``.
    """
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_STARTS) else value


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data
