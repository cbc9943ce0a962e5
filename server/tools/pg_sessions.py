"""What PostgreSQL's sessions of one database spend their time on during a benchmark phase.

``pg_stat_activity`` is read every few milliseconds over a connection of its own; each
client session of the database that is not idle counts in one state:

- **running**: executing a statement (on the CPU, or waiting on something not listed below);
- **row locks**: waiting for another transaction's row or transaction lock (``Lock``);
- **WAL flush**: waiting for its commit record to reach the disk (``WALSync``/``WALWrite``);
- **idle in transaction**: its transaction is open and it waits for the client's next command,
  i.e. for the server's event loop to send the COMMIT or the next statement.

The averages are session counts: 0.5 running means one session ran half of the time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass

import asyncpg

PERIOD_S = 0.005
STATES = ("running", "row locks", "WAL flush", "idle in transaction")
READ = """SELECT state, wait_event_type, wait_event FROM pg_stat_activity
WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND state <> 'idle'"""


@dataclass(frozen=True)
class Shares:
    """Average sessions in each state over the samples taken."""

    samples: int
    average: dict[str, float]

    def summary(self) -> str:
        if not self.samples:
            return "no samples"
        return ", ".join(f"{name} {self.average.get(name, 0.0):.2f}" for name in STATES)


def state_of(state: str | None, wait_type: str | None, wait_event: str | None) -> str:
    """The state a session counts in (see the module docstring)."""
    if state is not None and state.startswith("idle in transaction"):
        return "idle in transaction"
    if wait_type == "Lock":
        return "row locks"
    if wait_event in ("WALSync", "WALWrite"):
        return "WAL flush"
    return "running"


class Sessions:
    """Samples the sessions of ``database`` from :meth:`start` until :meth:`stop` (which awaits the sampling task)."""

    def __init__(self, dsn: str, database: str) -> None:
        self.dsn = dsn
        self.database = database
        self._counts: Counter[str] = Counter()
        self._samples = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        self._task = asyncio.get_running_loop().create_task(self._sample(conn), name="bench-pg-sessions")

    async def stop(self) -> Shares:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        n = self._samples
        return Shares(n, {name: count / n for name, count in self._counts.items()} if n else {})

    async def _sample(self, conn: asyncpg.Connection) -> None:
        try:
            while True:
                for row in await conn.fetch(READ, self.database):
                    self._counts[state_of(row["state"], row["wait_event_type"], row["wait_event"])] += 1
                self._samples += 1
                await asyncio.sleep(PERIOD_S)
        finally:
            await conn.close(timeout=2)
