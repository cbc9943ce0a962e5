"""Accept a batch of events: validate, commit to PostgreSQL, apply to the live state.

The order is the durability promise of API.md: an event is answered as
accepted (or duplicate) only after its row is committed. Live state is
applied afterwards; when Redis is away the reply is still 2xx and the live
state is rebuilt from PostgreSQL once Redis is back. When PostgreSQL is away
the reply is 503 with ``Retry-After`` and nothing is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

import asyncpg
import orjson

from server.core.db import UNAVAILABLE, Database, query
from server.core.errors import ServiceUnavailable
from server.core.metrics import Metrics
from server.core.settings_store import SettingsStore
from server.ingest.events import Event
from server.live.committer import GroupCommit
from server.live.heal import Healer
from server.live.roster import Roster
from server.live.state import Calendar, LiveState

log = logging.getLogger("wallboard.ingest")

# Fields stored as columns of `events`, left out of its `body`.
COLUMNS = frozenset({"event_id", "type", "ts", "queue_id", "agent_id", "call_id"})
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# Conflicts between concurrent transactions that a retry resolves.
TRANSIENT = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
# SQLSTATE of the ingest routine when a batch needs statements of their own (sql/routines/ingest.sql).
STEPS = "WB001"


@dataclass
class Outcome:
    """What became of a batch: the reply's ``data``."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, object]] = field(default_factory=list)

    @property
    def status(self) -> int:
        """200 when every event was taken, 207 when some were rejected, 422 when none was taken."""
        if not self.rejected:
            return 200
        return 207 if self.accepted + self.duplicates else 422

    def data(self) -> dict[str, object]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


class Ingestor:
    """Stores events and applies them to the live state; shared by every ingest route."""

    def __init__(self, db: Database, live: LiveState, store: SettingsStore,
                 on_change: Callable[[str], None] | None = None, healer: Healer | None = None, *,
                 roster: Roster | None = None, group_max_events: int, group_inflight: int, apply_ahead: int) -> None:
        self.db = db
        self.live = live
        self.store = store
        self.on_change = on_change  # told the tenant after new events were committed
        self.healer = healer  # keeps a marker of each batch from its commit to its apply (heal.py)
        self.roster = roster  # refuses events that would pass the tenant's live size budget (roster.py)
        self._partitions: set[date] = set()
        self._routine = True  # False once the database turned out to lack this release's ingest routine
        # Concurrent small requests of a tenant share one commit (committer.py).
        self.groups = GroupCommit(self.commit, max_events=group_max_events, inflight=group_inflight,
                                  apply_ahead=apply_ahead)
        self.metrics: Metrics | None = None  # set by the app: events by outcome, batch latency

    async def close(self) -> None:
        """Ends the shared commits in flight."""
        await self.groups.close()

    async def ingest(self, tenant: str, valid: Sequence[tuple[int, Event]], rejected: list[dict[str, object]]) -> Outcome:
        """Commit the valid events (deduplicated by event_id), then apply the new ones to live state.

        The events may share their commit with other requests of the tenant (group commit);
        the reply comes after that commit, counting as accepted the ids this request made new."""
        if self.metrics is None:
            return await self._ingest(tenant, valid, rejected)
        began = time.perf_counter()
        outcome = await self._ingest(tenant, valid, rejected)
        m = self.metrics
        m.ingest_seconds.observe(time.perf_counter() - began)
        for counter, amount in ((m.accepted, outcome.accepted), (m.duplicates, outcome.duplicates),
                                (m.rejected, len(outcome.rejected))):
            if amount:  # each inc takes the counter's lock: a one-event request has one count to add
                counter.inc(amount)
        return outcome

    async def _ingest(self, tenant: str, valid: Sequence[tuple[int, Event]], rejected: list[dict[str, object]]) -> Outcome:
        if self.roster is not None and valid:
            valid, refused = await self.roster.admit(tenant, valid)
            if refused:
                rejected = sorted([*rejected, *refused], key=_index)
        outcome = Outcome(rejected=rejected)
        unique: dict[str, Event] = {}
        for _, event in valid:
            unique.setdefault(event.event_id, event)
        outcome.duplicates = len(valid) - len(unique)
        if not unique:
            return outcome
        fresh = await self.groups.store(tenant, list(unique.values()))
        outcome.accepted = len(fresh)
        outcome.duplicates += len(unique) - len(fresh)
        return outcome

    async def commit(self, tenant: str, unique: Sequence[Event],
                     stored: Callable[[set[str]], None] | None = None) -> set[str]:
        """Store events unique by id in one transaction, then apply the new ones to the live state; the new ids.

        ``stored`` is told the new ids once the transaction committed, before the apply (group commit starts the next
        group then, and may answer this one's requests: the apply registers with the live state before its first await,
        so a read the answer leads to waits for it, :meth:`LiveState.settled`)."""
        # Sorted by id: concurrent batches sharing ids take their index locks in one order (no deadlock).
        events = sorted(unique, key=lambda e: e.event_id)
        settings = await self.store.get(tenant)
        cal = Calendar(settings)  # one per batch: history and the live state resolve days and thresholds once
        batch = self.healer.new_batch() if self.healer is not None else None
        # A group of small requests in one round trip (sql/routines/ingest.sql); a batch alone in a transaction.
        fresh = await self.store_events(tenant, events, cal, batch=batch, small=stored is not None)
        if stored is not None:
            stored(fresh)
        applied = True
        if fresh:
            if self.on_change is not None:
                self.on_change(tenant)
            new = [e for e in events if e.event_id in fresh]
            applied = await self.live.apply(tenant, new, settings, cal)
        if self.healer is not None and batch is not None:
            (self.healer.applied if applied else self.healer.failed)(tenant, batch)
        return fresh

    async def store_events(self, tenant: str, events: Sequence[Event], cal: Calendar, *, batch: int | None = None,
                           small: bool = False) -> set[str]:
        """Insert the batch and apply the new events to the history tables, in one statement
        (events_store.sql); return the ids that were new. 503 when PostgreSQL is away.

        ``batch``: the id of the batch's pending-apply marker, written by the same statement.
        ``small``: a group of small requests (committer.py), stored in one round trip by the ``ingest`` routine,
        which binds the tenant and commits in the same statement; when it finds work for statements of their
        own (see sql/routines/ingest.sql), it changes nothing and the batch is stored in a transaction here."""
        days = {date.fromordinal(EPOCH_ORDINAL + e.ts_ms // 86_400_000) for e in events}
        missing = days - self._partitions
        ids, types, stamps, queues, agents, calls, bodies, service_level, short_abandon = columns = (
            [], [], [], [], [], [], [], [], [])
        for e in events:
            ids.append(e.event_id)
            types.append(e.type)
            stamps.append(e.ts_ms)
            queues.append(e.queue_id)
            agents.append(e.agent_id)
            calls.append(e.call_id)
            # The columns are not repeated in the stored body.
            bodies.append(orjson.dumps({k: v for k, v in e.body.items() if k not in COLUMNS}).decode())
            sl_ms, sa_ms = cal.thresholds_ms(e.queue_id) if e.queue_id else (0, 0)
            service_level.append(sl_ms)
            short_abandon.append(sa_ms)
        routine = small and not missing and self._routine
        retries = 0
        while True:
            try:
                if routine:
                    rows = await self.db.routine(tenant, "ingest", tenant, *columns, cal.settings.timezone,
                                                 cal.settings.day_start_minutes, batch)
                    break
                async with self.db.tenant(tenant) as conn:
                    if missing:
                        await conn.execute("SELECT ensure_partitions($1)", sorted(missing))
                    rows = await conn.fetch(query("events_store"), tenant, *columns, cal.settings.timezone,
                                            cal.settings.day_start_minutes, batch)
                    slow = {row["slow_agent"] for row in rows if row["slow_agent"] is not None}
                    if slow:
                        await self._store_states(conn, tenant, [e for e in events if e.agent_id in slow], rows, cal)
                    unmarked = [(row["unmarked_agent"], row["unmarked_event"]) for row in rows
                                if row["unmarked_event"] is not None]
                    if unmarked:  # an event's new predecessor unmade its login or logout mark
                        await conn.execute(query("agent_states_unmark"), tenant,
                                           *map(list, zip(*unmarked, strict=True)))
                    held = [(row["held_call"], row["held_queue"]) for row in rows if row["held_call"] is not None]
                    if held:  # late holds changed completed calls' hold time: their per-call records follow
                        await conn.execute(query("agent_metrics_holds"), tenant, *map(list, zip(*held, strict=True)))
                break
            except UNAVAILABLE as exc:
                # Lost while its commit was under way, the batch may be stored all the same (PostgreSQL committed, its
                # answer never came): sending it again is safe, the events stored already come back as duplicates.
                raise ServiceUnavailable(f"PostgreSQL is unreachable ({type(exc).__name__}); the batch may not have been "
                                         "stored: send it again (events already stored are answered as duplicates)",
                                         code="database_unavailable") from None
            except asyncpg.PostgresError as exc:
                if routine and exc.sqlstate == STEPS:  # the batch needs statements of their own: a transaction
                    routine = False
                    continue
                if routine and isinstance(exc, asyncpg.UndefinedFunctionError):
                    # A database migrated by another release: transactions from now on (`wallboard migrate` creates it).
                    self._routine = routine = False
                    log.warning("ingest.routine_missing", extra={"routine": "ingest"})
                    continue
                if not isinstance(exc, TRANSIENT):
                    raise
                if retries == 4:
                    raise ServiceUnavailable("PostgreSQL is too busy to store the batch now; nothing was stored: retry",
                                             code="database_busy") from None
                await asyncio.sleep(0.01 * 2 ** retries)
                retries += 1
        self._partitions |= missing
        return {row["event_id"] for row in rows if row["event_id"] is not None}

    @staticmethod
    async def _store_states(conn: asyncpg.Connection, tenant: str, events: Sequence[Event],
                            rows: Sequence[asyncpg.Record], cal: Calendar) -> None:
        """Agent-state history of the new agent.state events that events_store.sql left to agent_states_store.sql
        (late ones, or an agent without a head): a statement of its own, so its snapshot holds every event of
        those agents committed before (batches of one agent wait for each other on its agents row)."""
        fresh = {row["event_id"] for row in rows if row["event_id"] is not None}
        new = [e for e in events if e.type == "agent.state" and e.event_id in fresh]
        if not new:
            return
        await conn.execute(query("agent_state_lock"), tenant, sorted({e.agent_id for e in new}))
        await conn.execute(query("agent_states_store"), tenant, [e.event_id for e in new], [e.agent_id for e in new],
                           [e.ts_ms for e in new], cal.settings.timezone, cal.settings.day_start_minutes)


def _index(rejection: dict[str, object]) -> int:
    """A rejection's place in its batch (those of no event, a queue_log line's, first)."""
    index = rejection.get("index")
    return index if isinstance(index, int) else -1
