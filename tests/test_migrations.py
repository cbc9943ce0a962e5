"""Migrations: applied in order, recorded, idempotent, safe when processes race."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

import asyncpg

from server.core.migrations import migrate, migrations
from server.core.routines import routines


async def test_migrate_twice_applies_nothing_the_second_time(database_factory: Callable[..., Awaitable[str]]) -> None:
    """A second `migrate` on an up-to-date database changes nothing."""
    dsn = await database_factory(migrated=False)
    first = await migrate(dsn)
    assert first == [m.version for m in migrations()]
    assert await migrate(dsn) == []
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    finally:
        await conn.close()
    assert [r["version"] for r in rows] == first


async def test_migrate_creates_this_releases_routines_for_the_app_role_only(
        database_factory: Callable[..., Awaitable[str]]) -> None:
    """Each routine exists under its versioned name, executable by the application role and not by PUBLIC; a second
    `migrate` keeps it (the same function, not created again)."""
    dsn = await database_factory(migrated=False)
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        found = [await conn.fetchrow("SELECT p.oid, p.xmin::text AS created, has_function_privilege('wallboard_app', p.oid, "
                                     "'EXECUTE') AS app, coalesce(array_to_string(p.proacl, ','), '') AS acl "
                                     "FROM pg_proc p WHERE p.oid = to_regproc($1)", r.name) for r in routines()]
        await migrate(dsn)
        again = [await conn.fetchval("SELECT xmin::text FROM pg_proc WHERE oid = to_regproc($1)", r.name) for r in routines()]
    finally:
        await conn.close()
    assert [r.base for r in routines()] == ["ingest"]
    assert all(row is not None and row["app"] for row in found), found
    assert not any(entry.startswith("=") for row in found for entry in row["acl"].split(",")), found  # PUBLIC: "=X/…"
    assert again == [row["created"] for row in found]


async def test_two_processes_migrating_at_once_both_succeed(database_factory: Callable[..., Awaitable[str]]) -> None:
    """Two `wallboard migrate` processes started together both exit 0 and apply each migration once."""
    dsn = await database_factory(migrated=False)
    env = {**os.environ, "DATABASE_URL": dsn, "REDIS_URL": "redis://127.0.0.1:1"}

    async def run() -> tuple[int, bytes]:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "server", "migrate", env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        return proc.returncode or 0, out

    results = await asyncio.gather(run(), run(), run())
    assert all(code == 0 for code, _ in results), results
    outputs = sorted(out.decode() for _, out in results)
    assert sum("applied" in o and "up to date" not in o for o in outputs) == 1, outputs
    conn = await asyncpg.connect(dsn)
    try:
        counts = await conn.fetch("SELECT version, count(*) AS n FROM schema_migrations GROUP BY version")
    finally:
        await conn.close()
    assert {r["version"] for r in counts} == {m.version for m in migrations()}
    assert all(r["n"] == 1 for r in counts)


async def test_app_role_owns_nothing_and_cannot_bypass_rls(database: str) -> None:
    """The role the server drops to neither owns the tables nor bypasses row-level security."""
    conn = await asyncpg.connect(database)
    try:
        role = await conn.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'wallboard_app'")
        owned = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = 'wallboard_app'")
        unforced = await conn.fetch(
            """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'client_id'
               WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                 AND NOT (c.relrowsecurity AND c.relforcerowsecurity)""")
    finally:
        await conn.close()
    assert role is not None and not role["rolsuper"] and not role["rolbypassrls"]
    assert owned == 0
    assert [r["relname"] for r in unforced] == []
