"""The schema: the numbered migrations (``sql/NNN_name.sql``), each run once, in order, and never edited once
applied; then the routines of this version (server/core/routines.py) that the database lacks."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from server.core.db import connect_once
from server.core.errors import ConfigError
from server.core.resources import sql_dir
from server.core.routines import routines

log = logging.getLogger("wallboard.db")

MIGRATION_RE = re.compile(r"(\d{3})_([a-z0-9_]+)\.sql")
# pg_advisory_lock key: the first 8 bytes of sha1("wallboard.migrate"), as a signed bigint.
MIGRATION_LOCK = int.from_bytes(hashlib.sha1(b"wallboard.migrate").digest()[:8], "big", signed=True)


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
    """Apply the migrations not applied yet, then create the routines this version calls that are missing;
    return the versions applied now.

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
            for routine in routines():
                if await conn.fetchval("SELECT to_regproc($1) IS NULL", routine.name):
                    async with conn.transaction():
                        await conn.execute(routine.create(app_role))
                    log.info("routine.created", extra={"routine": routine.name})
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied_now
