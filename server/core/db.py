"""PostgreSQL: the pool, the migrations, named queries and tenant-scoped transactions.

Every transaction that touches tenant data runs through :meth:`Database.tenant`,
which sets the tenant (``wallboard.tenant``) and drops to the application
role with ``set_config(..., true)`` (the ``SET LOCAL`` form) in the same
round trip. Row-level security on every tenant table compares ``client_id``
with that setting, so a query that forgot its ``WHERE client_id = $1`` still
sees one tenant only, and a transaction that set no tenant sees nothing. When a
separate login role serves, a proof binds the tenant to the backend (see
server/core/db_roles.py): that role cannot switch tenants with a ``SET``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import asyncpg

from server.core.db_roles import read_tenant_key, tenant_proof
from server.core.errors import ConfigError, ServiceUnavailable
from server.core.resources import sql_dir

log = logging.getLogger("wallboard.db")

MIGRATION_RE = re.compile(r"(\d{3})_([a-z0-9_]+)\.sql")
# pg_advisory_lock key: the first 8 bytes of sha1("wallboard.migrate"), as a signed bigint.
MIGRATION_LOCK = int.from_bytes(hashlib.sha1(b"wallboard.migrate").digest()[:8], "big", signed=True)

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


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations(directory: Path | None = None) -> list[Migration]:
    """The numbered migration files of ``sql/`` (or ``directory``), in order."""
    directory = directory or sql_dir()
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_RE.fullmatch(path.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise ConfigError(f"two migrations in {directory} share a number: {versions}")
    return found


async def migrate(dsn: str, *, app_role: str = "wallboard_app") -> list[int]:
    """Apply the migrations not applied yet; return the versions applied now.

    A session-level advisory lock serialises concurrent migrators (several
    processes starting at once): the second waits, then finds nothing to do.
    Each migration runs in its own transaction with its row in
    ``schema_migrations``; a changed file that was already applied is refused.
    """
    conn = await connect_once(dsn)
    applied_now: list[int] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r["version"]: r["checksum"] for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")}
            for migration in migrations():
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        log.warning("migration.changed", extra={"version": migration.version, "migration": migration.name})
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql.replace(":app_role", app_role))
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        migration.version, migration.name, migration.checksum,
                    )
                applied_now.append(migration.version)
                log.info("migration.applied", extra={"version": migration.version, "migration": migration.name})
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied_now


async def connect_once(dsn: str, timeout: float = 10) -> asyncpg.Connection:
    """One connection, with a clear ConfigError when the URL or server is wrong."""
    try:
        return await asyncpg.connect(dsn, timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise ConfigError(f"DATABASE_URL: cannot connect to PostgreSQL ({_one_line(exc)}): check the URL and that the server runs") from None


class Database:
    """The connection pool and the tenant-scoped transaction helper."""

    def __init__(self, pool: asyncpg.Pool, app_role: str, tenant_key: bytes | None = None) -> None:
        self.pool = pool
        self.app_role = app_role
        self.tenant_key = tenant_key  # None when DATABASE_URL's user is the owner (needs no proof)

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 2, max_size: int = 10, app_role: str = "wallboard_app",
                      owner_dsn: str | None = None) -> Database:
        """The pool on ``dsn``; with ``owner_dsn`` (a separate login role serves) the tenant-binding key is read first."""
        tenant_key = await read_tenant_key(owner_dsn) if owner_dsn is not None else None
        try:
            pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, timeout=10,
                                             command_timeout=60, max_inactive_connection_lifetime=300,
                                             max_cacheable_statement_size=STATEMENT_CACHE_BYTES,
                                             reset=_keep_session)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise ConfigError(f"DATABASE_URL: cannot connect to PostgreSQL ({_one_line(exc)}): check the URL and that the server runs") from None
        return cls(pool, app_role, tenant_key)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Close the pool gracefully; connections still busy after ``timeout_s`` are cut."""
        try:
            await asyncio.wait_for(self.pool.close(), timeout_s)
        except TimeoutError:
            log.warning("db.close_timeout", extra={"seconds": timeout_s})
            self.pool.terminate()

    @asynccontextmanager
    async def tenant(self, tenant: str) -> AsyncIterator[asyncpg.Connection]:
        """A transaction as the application role with ``wallboard.tenant`` set to ``tenant``.

        Raises ServiceUnavailable (503, Retry-After) when PostgreSQL cannot be reached.
        """
        try:
            async with self.pool.acquire(timeout=5) as conn:
                async with conn.transaction():
                    await conn.execute(
                        "SELECT set_config('role', $1, true), set_config('wallboard.tenant', $2, true),"
                        " set_config('wallboard.tenant_proof', $3, true)",
                        self.app_role, tenant, tenant_proof(self.tenant_key, conn.get_server_pid(), tenant),
                    )
                    yield conn
        except UNAVAILABLE as exc:
            raise ServiceUnavailable(f"PostgreSQL is unreachable ({_one_line(exc)}); retry shortly",
                                     code="database_unavailable") from None
        except TimeoutError:
            raise ServiceUnavailable("PostgreSQL did not answer in time; retry shortly",
                                     code="database_unavailable") from None

    async def ping(self) -> None:
        """Raise when PostgreSQL does not answer ``SELECT 1`` within 2 s."""
        async with self.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1", timeout=2)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Released connections skip asyncpg's reset query (RESET ALL, UNLISTEN, ...): a round trip
    per transaction for session state this server never makes. Tenant and role are SET LOCAL, locks
    are transaction locks, and asyncpg still rolls back a transaction left open."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
