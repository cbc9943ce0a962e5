"""PostgreSQL: the pool, named queries, tenant-scoped transactions and routine calls (migrations.py migrates).

Every transaction that touches tenant data runs through :meth:`Database.tenant`,
which sets the tenant (``wallboard.tenant``), drops to the application role and
bounds the transaction (``statement_timeout``, ``idle_in_transaction_session_timeout``)
with ``set_config(..., true)`` (the ``SET LOCAL`` form), all in the round trip of its
``BEGIN``; or through :meth:`Database.routine`, a transaction one statement long whose
routine sets the same binding itself. Row-level security on every tenant table compares ``client_id`` with that setting,
so a query that forgot its ``WHERE client_id = $1`` still sees one tenant only, and a transaction that set no tenant sees nothing. When a
separate login role serves, a proof binds the tenant to the backend (see
server/core/db_roles.py): that role cannot switch tenants with a ``SET``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import cache

import asyncpg

from server.core.db_roles import read_tenant_key, tenant_proof
from server.core.errors import ConfigError, ServiceUnavailable
from server.core.resources import sql_dir
from server.core.routines import routine

log = logging.getLogger("wallboard.db")

# asyncpg prepares a statement once per connection only up to this size (its default is 15 KiB);
# events_store.sql is larger, and parsing and planning it again on every batch cost ~3 ms of
# PostgreSQL CPU per request.
STATEMENT_CACHE_BYTES = 64 * 1024

# Errors that mean "PostgreSQL is not there right now", as opposed to a bug.
UNAVAILABLE = (
    OSError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
)


@cache
def query(name: str) -> str:
    """The text of ``sql/queries/<name>.sql`` (read once)."""
    path = sql_dir() / "queries" / f"{name}.sql"
    return path.read_text()


async def connect_once(dsn: str, timeout: float = 10) -> asyncpg.Connection:
    """One connection, with a clear ConfigError when the URL or server is wrong."""
    try:
        return await asyncpg.connect(dsn, timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise ConfigError(f"DATABASE_URL: cannot connect to PostgreSQL ({_one_line(exc)}): check the URL and that the server runs") from None


class TenantSlots:
    """At most ``limit`` holders per tenant at once; a tenant's next caller waits up to ``wait_s``.

    One tenant's burst (or its slow exports) can then hold only its share of the pool: the
    rest stays free for the other tenants, and only the greedy tenant waits, then gets
    ``503 database_busy``.
    """

    def __init__(self, limit: int, wait_s: float, *, what: str = "database connections", code: str = "database_busy") -> None:
        self.limit = limit
        self.wait_s = wait_s
        self.what = what
        self.code = code
        self._gates: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}  # tenant → (gate, [users])

    async def take(self, tenant: str) -> None:
        gate, users = self._gates.get(tenant) or self._gates.setdefault(tenant, (asyncio.Semaphore(self.limit), [0]))
        users[0] += 1
        try:
            if gate.locked():
                await asyncio.wait_for(gate.acquire(), self.wait_s)
            else:
                await gate.acquire()
        except BaseException as exc:
            self._leave(tenant, users)
            if isinstance(exc, TimeoutError):
                raise ServiceUnavailable(f"this tenant already holds its {self.limit} {self.what}; retry shortly",
                                         code=self.code) from None
            raise

    def give(self, tenant: str) -> None:
        gate, users = self._gates[tenant]
        gate.release()
        self._leave(tenant, users)

    def _leave(self, tenant: str, users: list[int]) -> None:
        users[0] -= 1
        if users[0] == 0:
            del self._gates[tenant]

    def held(self, tenant: str) -> int:
        """How many holders and waiters ``tenant`` has now."""
        entry = self._gates.get(tenant)
        return entry[1][0] if entry else 0


class Database:
    """The connection pool and the tenant-scoped transaction helper."""

    def __init__(self, pool: asyncpg.Pool, app_role: str, *, tenant_key: bytes | None = None,
                 health: asyncpg.Pool | None = None, statement_timeout_s: float = 30.0, idle_timeout_s: float = 10.0,
                 tenant_max: int | None = None, tenant_wait_s: float = 5.0) -> None:
        self.pool = pool
        self.app_role = app_role
        self.tenant_key = tenant_key  # None when DATABASE_URL's user is the owner (needs no proof)
        self.health = health  # its own connection: the health check never queues behind tenant work
        # SET LOCAL values (milliseconds) of every tenant transaction: a runaway query or a transaction left
        # idle (a handler stuck on a slow client) is ended by PostgreSQL itself and its connection comes back.
        self.timeouts = (str(max(1, round(statement_timeout_s * 1000))), str(max(1, round(idle_timeout_s * 1000))))
        self.statement_timeout_s = statement_timeout_s  # a routine's statement, cancelled from here (routine())
        self.slots = TenantSlots(min(tenant_max or pool.get_max_size(), pool.get_max_size()), tenant_wait_s)
        # History reads (reports, figures, exports): the Database of DATABASE_REPLICA_URL when set, else this one.
        # Rows written a moment ago may not be there yet (replication lag); nothing that writes uses it.
        self.reader: Database = self
        self.on_wait: Callable[[float], None] | None = None  # told each tenant transaction's wait for a connection
        self._calls: dict[tuple[str, int], str] = {}  # (routine, arguments) → its SELECT

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 2, max_size: int = 10, app_role: str = "wallboard_app",
                      statement_timeout_s: float = 30.0, idle_timeout_s: float = 10.0, tenant_max: int | None = None,
                      tenant_wait_s: float = 5.0, owner_dsn: str | None = None, setting: str = "DATABASE_URL") -> Database:
        """The pool on ``dsn``; with ``owner_dsn`` (a separate login role serves) the tenant-binding key is read first."""
        tenant_key = await read_tenant_key(owner_dsn) if owner_dsn is not None else None
        try:
            pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, timeout=10,
                                             command_timeout=60, max_inactive_connection_lifetime=300,
                                             max_cacheable_statement_size=STATEMENT_CACHE_BYTES,
                                             reset=_keep_session)
            health = await asyncpg.create_pool(dsn, min_size=1, max_size=1, timeout=10, command_timeout=5,
                                               max_inactive_connection_lifetime=0)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise ConfigError(f"{setting}: cannot connect to PostgreSQL ({_one_line(exc)}): check the URL and that the server runs") from None
        return cls(pool, app_role, tenant_key=tenant_key, health=health, statement_timeout_s=statement_timeout_s,
                   idle_timeout_s=idle_timeout_s, tenant_max=tenant_max, tenant_wait_s=tenant_wait_s)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Close the pool (and the replica's) gracefully; connections still busy after ``timeout_s`` are cut."""
        if self.reader is not self:
            await self.reader.close(timeout_s)
        if self.health is not None:
            self.health.terminate()
        try:
            await asyncio.wait_for(self.pool.close(), timeout_s)
        except TimeoutError:
            log.warning("db.close_timeout", extra={"seconds": timeout_s})
            self.pool.terminate()

    @asynccontextmanager
    async def tenant(self, tenant: str) -> AsyncIterator[asyncpg.Connection]:
        """A transaction as the application role with ``wallboard.tenant`` set to ``tenant``.

        Raises ServiceUnavailable (503, Retry-After) when PostgreSQL cannot be reached, or
        ``database_busy`` when the tenant holds its share of the pool (:class:`TenantSlots`) too long.
        """
        async with self._connection(tenant) as conn:
            # BEGIN and the binding in one simple-query round trip (a transaction of asyncpg's would
            # send BEGIN alone first); COMMIT or ROLLBACK below, as asyncpg's Transaction does them.
            await conn.execute(self._begin(tenant, conn.get_server_pid()))
            try:
                yield conn
            except BaseException:
                if not conn.is_closed() and conn.is_in_transaction():
                    with contextlib.suppress(*UNAVAILABLE, asyncpg.PostgresError):
                        # Left to the pool's release (which rolls back, or drops a broken connection)
                        # when this fails: the exception that ended the transaction is the one to raise.
                        await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    async def routine(self, tenant: str, base: str, *args: object) -> list[asyncpg.Record]:
        """``SELECT * FROM`` the routine ``base`` of sql/routines/ over ``args``, then the application role and the
        tenant's proof: one statement in a transaction of its own, one round trip (BEGIN, the statement and COMMIT
        in one). The routine binds ``tenant`` itself, as :meth:`tenant` does; its statement is cancelled after the
        statement timeout. Errors as :meth:`tenant`'s; an error of PostgreSQL's is raised as it is."""
        sql = self._calls.get((base, len(args)))
        if sql is None:
            sql = self._calls[base, len(args)] = routine(base).call(len(args) + 2)
        async with self._connection(tenant) as conn:
            proof = tenant_proof(self.tenant_key, conn.get_server_pid(), tenant)
            return await conn.fetch(sql, *args, self.app_role, proof, timeout=self.statement_timeout_s)

    @asynccontextmanager
    async def _connection(self, tenant: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection within the tenant's share of the pool; PostgreSQL away or slow: ServiceUnavailable."""
        began = time.perf_counter()
        await self.slots.take(tenant)
        try:
            async with self.pool.acquire(timeout=5) as conn:
                if self.on_wait is not None:
                    self.on_wait(time.perf_counter() - began)
                yield conn
        except UNAVAILABLE as exc:
            raise ServiceUnavailable(f"PostgreSQL is unreachable ({_one_line(exc)}); retry shortly",
                                     code="database_unavailable") from None
        except TimeoutError:
            raise ServiceUnavailable("PostgreSQL did not answer in time; retry shortly",
                                     code="database_unavailable") from None
        finally:
            self.slots.give(tenant)

    def _begin(self, tenant: str, pid: int) -> str:
        """``BEGIN`` and the tenant binding of :meth:`tenant` as one simple-query string.

        A simple query takes no ``$1`` parameters, so the values are quoted here (``E''`` literals,
        the same whatever ``standard_conforming_strings`` says); every one is also checked by its
        source (the role by the settings, the tenant by the token's rules, the proof is hex)."""
        values = (self.app_role, tenant, *self.timeouts, tenant_proof(self.tenant_key, pid, tenant))
        role, name, statement_ms, idle_ms, proof = (_literal(value) for value in values)
        return (f"BEGIN; SELECT set_config('role', {role}, true), set_config('wallboard.tenant', {name}, true), "
                f"set_config('statement_timeout', {statement_ms}, true), "
                f"set_config('idle_in_transaction_session_timeout', {idle_ms}, true), "
                f"set_config('wallboard.tenant_proof', {proof}, true)")

    async def ping(self) -> None:
        """Raise when PostgreSQL does not answer ``SELECT 1`` within 2 s, on the health check's own
        connection (the tenant pool may be busy, which is no reason to take the process out)."""
        async with (self.health or self.pool).acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1", timeout=2)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Released connections skip asyncpg's reset query (RESET ALL, UNLISTEN, ...): a round trip
    per transaction for session state this server never makes. Tenant and role are SET LOCAL, locks
    are transaction locks, and asyncpg still rolls back a transaction left open."""


def _literal(value: str) -> str:
    """``value`` as an escaped string literal (``E'…'``) of PostgreSQL; a NUL, which no text can hold, is refused."""
    if "\0" in value:
        raise ValueError("a string for PostgreSQL holds a NUL character")
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
