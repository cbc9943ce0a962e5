"""A serving login role apart from the owner: it cannot become the owner, nor read another tenant's rows."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from server.core.config import Settings
from server.core.db import Database
from server.core.db_roles import login_role_sql, serving_role_problems, tenant_proof
from server.core.errors import ConfigError
from server.core.migrations import migrate
from server.core.routines import routine
from server.history.retention import Retention
from server.runtime import preflight

from .conftest import ROOT, RUN_ID, Backends, RunningServer, with_database

APP_ROLE = "wallboard_app"


def as_user(dsn: str, user: str, password: str) -> str:
    """``dsn`` with another user and password."""
    parts = urlsplit(dsn)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Roles:
    owner_dsn: str  # the test database as the superuser that migrated it
    login_dsn: str  # the same database as the serving login role
    login: str


@pytest.fixture(scope="module")
async def roles(database_factory: Callable[..., Awaitable[str]]) -> AsyncIterator[Roles]:
    """A migrated database and a login role of this run (dropped at the end) that is a member of wallboard_app only."""
    owner_dsn = await database_factory()
    login, password = f"wbt_login_{RUN_ID}", secrets.token_urlsafe(18)
    admin = await asyncpg.connect(owner_dsn)
    try:
        await admin.execute(login_role_sql(login, APP_ROLE, password))
    finally:
        await admin.close()
    yield Roles(owner_dsn, as_user(owner_dsn, login, password), login)
    admin = await asyncpg.connect(owner_dsn)
    try:
        await admin.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{login}'")
        await admin.execute(f"DROP ROLE IF EXISTS {login}")
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def login_server(roles: Roles, module_server_factory: Callable[[Settings], Awaitable[RunningServer]],
                       settings: Settings) -> AsyncIterator[RunningServer]:
    """A real server whose pool connects as the login role; migrations and the key through the owner's URL."""
    server = await module_server_factory(settings.replace(database_url=roles.login_dsn, migrate_database_url=roles.owner_dsn,
                                                   key_prefix=f"{settings.key_prefix}r"))
    yield server
    await server.stop()  # before the role is dropped


async def ingest(server: RunningServer, tenant: str, n: int = 2) -> None:
    now = int(time.time() * 1000) - 1000
    events = [{"event_id": f"{tenant}-e{i}", "type": "agent.state", "ts": now, "agent_id": f"{tenant}-agent{i}",
               "state": "available", "queues": ["sales"]} for i in range(n)]
    async with server.client(server.token(tenant, "ingest")) as client:
        response = await client.post("/api/events", json=events)
    assert response.status_code == 200, response.text


async def test_server_serves_with_the_login_role(roles: Roles, login_server: RunningServer) -> None:
    """With DATABASE_URL a login role and WALLBOARD_MIGRATE_DATABASE_URL the owner, ingest and settings work per tenant."""
    a, b = f"ra-{RUN_ID}", f"rb-{RUN_ID}"
    await ingest(login_server, a, 2)
    await ingest(login_server, b, 3)
    async with login_server.client(login_server.token(a, "admin")) as client:
        put = await client.put("/api/settings", json={"sl_threshold_s": 33})
        got = await client.get("/api/settings")
    assert put.status_code == 200 and got.json()["data"]["sl_threshold_s"] == 33, got.text
    async with login_server.client(login_server.token(b, "admin")) as client:
        other = await client.get("/api/settings")
    assert other.status_code == 200 and other.json()["data"]["sl_threshold_s"] != 33, other.text
    owner = await asyncpg.connect(roles.owner_dsn)
    try:
        counts = dict(await owner.fetch("SELECT client_id, count(*) FROM events WHERE client_id = ANY($1) GROUP BY 1", [a, b]))
        users = {r["usename"] for r in await owner.fetch(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")}
    finally:
        await owner.close()
    assert counts == {a: 2, b: 3}
    assert roles.login in users
    # The healer's cross-tenant sweeps run as the login role too: applied batches' markers are cleared.
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        owner = await asyncpg.connect(roles.owner_dsn)
        try:
            left = await owner.fetchval("SELECT count(*) FROM live_pending WHERE client_id = ANY($1)", [a, b])
        finally:
            await owner.close()
        if left == 0 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.5)
    assert left == 0, "the login role's healer never cleared the markers of applied batches"


@pytest.mark.parametrize("escape", [
    "SET ROLE postgres",
    "SELECT set_config('role', 'postgres', true)",
    "SELECT set_config('role', 'postgres', false)",
    "SET SESSION AUTHORIZATION postgres",
    "SET SESSION AUTHORIZATION DEFAULT; SET ROLE postgres",
    "GRANT postgres TO CURRENT_USER",
    "ALTER ROLE CURRENT_USER SUPERUSER",
    "ALTER ROLE CURRENT_USER BYPASSRLS",
    "ALTER TABLE events DISABLE ROW LEVEL SECURITY",
    "ALTER TABLE events NO FORCE ROW LEVEL SECURITY",
    "DROP POLICY tenant_isolation ON events",
    "CREATE TABLE stolen (v text)",
    "CREATE FUNCTION public.mine() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT current_user::text'",
    "CREATE TEMP TABLE events (client_id text)",
    "SELECT key FROM tenant_binding_key",
    "CREATE OR REPLACE VIEW wallboard_tenant_bound AS SELECT current_setting('wallboard.tenant', true) AS tenant",
])
async def test_login_role_cannot_become_the_owner(roles: Roles, escape: str) -> None:
    """Every way to switch to the owner, bypass row-level security, read the key or run DDL is refused."""
    conn = await asyncpg.connect(roles.login_dsn)
    try:
        with pytest.raises(asyncpg.PostgresError):
            async with conn.transaction():
                await conn.execute(f"SET LOCAL ROLE {APP_ROLE}")
                await conn.execute(escape)
        await conn.execute("RESET ROLE")
        row = await conn.fetchrow("SELECT current_user, session_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)")
    finally:
        await conn.close()
    assert tuple(row) == (roles.login, roles.login, False)


async def test_reset_role_leaves_the_login_role(roles: Roles) -> None:
    """RESET ROLE and RESET ALL go back to the login role itself, which is no superuser, owner member or BYPASSRLS."""
    conn = await asyncpg.connect(roles.login_dsn)
    try:
        async with conn.transaction():
            await conn.execute(f"SELECT set_config('role', '{APP_ROLE}', true)")
            await conn.execute("RESET ROLE; RESET ALL")
            row = await conn.fetchrow(
                "SELECT r.rolname, r.rolsuper, r.rolbypassrls, pg_has_role(r.oid, c.relowner, 'MEMBER') AS owner "
                "FROM pg_roles r, pg_class c WHERE r.rolname = current_user AND c.oid = 'events'::regclass")
    finally:
        await conn.close()
    assert tuple(row) == (roles.login, False, False, False)


async def seeded(roles: Roles) -> tuple[str, str, bytes]:
    """Two tenants with rows in every tenant table tested; the binding key (read as the owner, as the server does)."""
    a, b = f"sa-{secrets.token_hex(3)}", f"sb-{secrets.token_hex(3)}"
    owner = await asyncpg.connect(roles.owner_dsn)
    try:
        for tenant in (a, b):
            async with owner.transaction():
                await owner.execute("SELECT set_config('wallboard.tenant', $1, true)", tenant)
                await owner.execute("INSERT INTO tenants (client_id) VALUES ($1)", tenant)
                await owner.execute("INSERT INTO agents (client_id, agent_id, seen_at) VALUES ($1, 'x', now())", tenant)
                await owner.execute("INSERT INTO performance_daily (client_id, dimension, key, day, answered) "
                                    "VALUES ($1, 'agent', 'x', current_date - 1, 1)", tenant)
        await owner.execute("SELECT refresh_scorecards()")
        key = bytes(await owner.fetchval("SELECT key FROM tenant_binding_key"))
    finally:
        await owner.close()
    return a, b, key


FORGERIES = [
    "SELECT set_config('wallboard.tenant', '{b}', true)",
    "SELECT set_config('wallboard.tenant', '{b}', false)",
    "SET LOCAL wallboard.tenant = '{b}'",
    "SET wallboard.tenant = '{b}'",
    "SELECT set_config('wallboard.tenant', '{b}', true), set_config('wallboard.tenant_proof', '{proof_a}', true)",
    "SELECT set_config('wallboard.tenant', '{b}', true), set_config('wallboard.tenant_proof', '', true)",
    "RESET ROLE; SELECT set_config('wallboard.tenant', '{b}', true)",
    "RESET ALL; SET wallboard.tenant = '{b}'",
    "SET LOCAL ROLE {app}; SET LOCAL wallboard.tenant = '{b}'",
    "SET LOCAL wallboard.refresh = 'scorecards'; SET LOCAL wallboard.tenant = '{b}'",
]


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_no_set_reads_another_tenants_rows(roles: Roles, forgery: str) -> None:
    """In a transaction bound to tenant A the login role sees A's rows; after the SET it sees none of B's."""
    a, b, key = await seeded(roles)
    conn = await asyncpg.connect(roles.login_dsn)
    try:
        proof_a = tenant_proof(key, conn.get_server_pid(), a)
        async with conn.transaction():
            await conn.execute("SELECT set_config('role', $1, true), set_config('wallboard.tenant', $2, true), "
                               "set_config('wallboard.tenant_proof', $3, true)", APP_ROLE, a, proof_a)
            assert await conn.fetchval("SELECT count(*) FROM tenants") == 1
            assert await conn.fetchval("SELECT count(*) FROM agents WHERE client_id = $1", a) == 1
            assert await conn.fetchval("SELECT count(*) FROM agent_scorecards_mine") == 1
            await conn.execute(forgery.format(b=b, proof_a=proof_a, app=APP_ROLE))
            seen = [await conn.fetchval(f"SELECT count(*) FROM {table} WHERE client_id = $1", b)
                    for table in ("tenants", "agents", "performance_daily", "agent_scorecards_mine")]
            with pytest.raises(asyncpg.PostgresError):  # a write for B is refused too
                await conn.execute("INSERT INTO agents (client_id, agent_id, seen_at) VALUES ($1, 'forged', now())", b)
    finally:
        await conn.close()
    assert seen == [0, 0, 0, 0]


async def test_a_proof_is_void_on_another_connection(roles: Roles) -> None:
    """A's proof copied to another backend, or without the server's proof at all, binds no tenant."""
    a, _, key = await seeded(roles)
    first = await asyncpg.connect(roles.login_dsn)
    second = await asyncpg.connect(roles.login_dsn)
    try:
        stolen = tenant_proof(key, first.get_server_pid(), a)
        counts = []
        for proof in (stolen, "", tenant_proof(b"guessed key", second.get_server_pid(), a)):
            async with second.transaction():
                await second.execute("SELECT set_config('wallboard.tenant', $1, true), "
                                     "set_config('wallboard.tenant_proof', $2, true)", a, proof)
                counts.append(await second.fetchval("SELECT count(*) FROM tenants"))
        async with second.transaction():
            await second.execute("SELECT set_config('wallboard.tenant', $1, true), set_config('wallboard.tenant_proof', $2, true)",
                                 a, tenant_proof(key, second.get_server_pid(), a))
            counts.append(await second.fetchval("SELECT count(*) FROM tenants"))
    finally:
        await first.close()
        await second.close()
    assert counts == [0, 0, 0, 1]


async def test_a_tenant_transaction_binds_commits_and_rolls_back(roles: Roles) -> None:
    """Database.tenant as the login role sees its tenant only, keeps what it committed, drops what failed."""
    a, _, _ = await seeded(roles)
    db = await Database.connect(roles.login_dsn, min_size=1, max_size=1, app_role=APP_ROLE, owner_dsn=roles.owner_dsn)
    try:
        async with db.tenant(a) as conn:
            seen = (await conn.fetchval("SELECT current_user"), await conn.fetchval("SELECT count(*) FROM tenants"),
                    await conn.fetchval("SHOW statement_timeout"))
            await conn.execute("INSERT INTO agents (client_id, agent_id, seen_at) VALUES ($1, 'kept', now())", a)
        with pytest.raises(ZeroDivisionError):
            async with db.tenant(a) as conn:
                await conn.execute("INSERT INTO agents (client_id, agent_id, seen_at) VALUES ($1, 'lost', now())", a)
                raise ZeroDivisionError
        async with db.tenant(a) as conn:  # the same connection (a pool of one), back in use
            agents = sorted(await conn.fetch("SELECT agent_id FROM agents"))
        async with db.tenant("x'; SET ROLE postgres; --\\") as conn:  # quoted as a value, never run as SQL
            odd = (await conn.fetchval("SELECT count(*) FROM agents"), await conn.fetchval("SELECT current_user"))
    finally:
        await db.close()
    assert seen == (APP_ROLE, 1, "30s")
    assert [row["agent_id"] for row in agents] == ["kept", "x"]
    assert odd == (0, APP_ROLE)


def one_queued(tenant: str, event_id: str) -> tuple[object, ...]:
    """The ingest routine's arguments before the binding ($1..$13): one call.queued event of ``tenant``."""
    now = int(time.time() * 1000)
    return (tenant, [event_id], ["call.queued"], [now], ["sales"], [None], [f"c-{event_id}"], ["{}"], [20_000],
            [5_000], "UTC", 0, None)


async def test_the_ingest_routine_binds_the_proven_tenant_only(roles: Roles) -> None:
    """The routine called by the login role stores its events for the tenant its proof binds; called for B with
    A's proof, or with no proof, it stores nothing (row-level security refuses the rows)."""
    a, b, key = await seeded(roles)
    db = await Database.connect(roles.login_dsn, min_size=1, max_size=1, app_role=APP_ROLE, owner_dsn=roles.owner_dsn)
    try:
        stored = await db.routine(a, "ingest", *one_queued(a, f"{a}-1"))
    finally:
        await db.close()
    conn = await asyncpg.connect(roles.login_dsn)
    refused = []
    try:
        sql = routine("ingest").call(15)
        for tenant, proof in ((b, tenant_proof(key, conn.get_server_pid(), a)), (b, ""), (a, "")):
            with pytest.raises(asyncpg.PostgresError) as caught:
                await conn.fetch(sql, *one_queued(tenant, f"{tenant}-forged"), APP_ROLE, proof)
            refused.append(type(caught.value).__name__)
    finally:
        await conn.close()
    owner = await asyncpg.connect(roles.owner_dsn)
    try:
        rows = await owner.fetch("SELECT client_id, event_id FROM events WHERE client_id = ANY($1) ORDER BY 1", [a, b])
    finally:
        await owner.close()
    assert [r["event_id"] for r in stored] == [f"{a}-1"]
    assert [tuple(r) for r in rows] == [(a, f"{a}-1")]
    assert refused == ["InsufficientPrivilegeError"] * 3


async def test_every_tenant_policy_uses_the_binding(roles: Roles) -> None:
    """No policy or view compares client_id with the forgeable setting itself: new tenant tables must use wallboard_tenant_bound."""
    owner = await asyncpg.connect(roles.owner_dsn)
    try:
        raw = await owner.fetch("SELECT tablename AS name FROM pg_policies WHERE qual LIKE '%wallboard.tenant%' "
                                "OR with_check LIKE '%wallboard.tenant%' "
                                "UNION ALL SELECT viewname FROM pg_views WHERE definition LIKE '%wallboard.tenant%' "
                                "AND viewname <> 'wallboard_tenant_bound'")
        unprotected = await owner.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relrowsecurity AND NOT c.relispartition AND NOT EXISTS "
            "(SELECT FROM pg_policies p WHERE p.tablename = c.relname AND p.qual LIKE '%wallboard_tenant_bound%')")
        bound = await owner.fetchval("SELECT count(*) FROM pg_policies WHERE policyname = 'tenant_isolation'")
    finally:
        await owner.close()
    assert [r["name"] for r in raw] == []
    assert [r["relname"] for r in unprotected] == []
    assert bound >= 14  # tenants, event_ids, events and the eleven history tables


async def test_migrate_runs_as_the_owner_and_the_login_role_runs_no_ddl(
        roles: Roles, database_factory: Callable[..., Awaitable[str]], settings: Settings) -> None:
    """`wallboard migrate` applies every migration with WALLBOARD_MIGRATE_DATABASE_URL; the login role cannot run DDL."""
    fresh = await database_factory(migrated=False)
    login = as_user(fresh, roles.login, urlsplit(roles.login_dsn).password or "")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLBOARD_")}
    env.update(DATABASE_URL=login, WALLBOARD_MIGRATE_DATABASE_URL=fresh, REDIS_URL=settings.redis_url or "")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "server", "migrate", env=env, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()
    assert re.search(rb"applied \d+ migration", out), out.decode()
    owner = await asyncpg.connect(fresh)
    try:
        assert await owner.fetchval("SELECT to_regclass('tenant_binding_key') IS NOT NULL")
    finally:
        await owner.close()
    conn = await asyncpg.connect(login)
    try:
        for ddl in ("CREATE TABLE stolen (v text)", "DROP TABLE events", "ALTER TABLE tenants ADD COLUMN x text",
                    "TRUNCATE events", "CREATE INDEX ON events (client_id)"):
            with pytest.raises(asyncpg.PostgresError):
                await conn.execute(ddl)
    finally:
        await conn.close()


async def test_preflight_refuses_an_owner_as_the_serving_role(roles: Roles, settings: Settings) -> None:
    """With WALLBOARD_MIGRATE_DATABASE_URL set, a DATABASE_URL that can become the owner stops start-up with one line."""
    bad = settings.replace(database_url=roles.owner_dsn, migrate_database_url=roles.owner_dsn)
    with pytest.raises(ConfigError, match="DATABASE_URL's role 'postgres' is a superuser"):
        await preflight(bad)


async def test_single_url_mode_warns_once(roles: Roles, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """A single owner DATABASE_URL still works, with one warning that the serving connection can become the owner."""
    caplog.set_level(logging.WARNING, logger="wallboard.runtime")
    await preflight(settings.replace(database_url=roles.owner_dsn))
    assert [r.message for r in caplog.records if r.name == "wallboard.runtime"] == ["db.serving_role_is_owner"]
    caplog.clear()
    await preflight(settings.replace(database_url=roles.login_dsn, migrate_database_url=roles.owner_dsn))
    assert [r for r in caplog.records if r.name == "wallboard.runtime"] == []


def test_migrate_url_needs_database_url() -> None:
    """WALLBOARD_MIGRATE_DATABASE_URL alone, or malformed, is refused naming the setting."""
    with pytest.raises(ConfigError, match="WALLBOARD_MIGRATE_DATABASE_URL is set but DATABASE_URL is not"):
        Settings.from_env({"WALLBOARD_MIGRATE_DATABASE_URL": "postgresql://owner@db/wallboard"})
    with pytest.raises(ConfigError, match="WALLBOARD_MIGRATE_DATABASE_URL"):
        Settings.from_env({"DATABASE_URL": "postgresql://login@db/wallboard", "WALLBOARD_MIGRATE_DATABASE_URL": "mysql://x"})
    both = Settings.from_env({"DATABASE_URL": "postgresql://login@db/w", "WALLBOARD_MIGRATE_DATABASE_URL": "postgresql://o@db/w"})
    assert both.migrate_database_url == "postgresql://o@db/w"



async def test_a_non_superuser_owner_migrates_and_a_login_role_serves(
        roles: Roles, backends: Backends, server_factory: Callable[[Settings], Awaitable[RunningServer]],
        settings: Settings) -> None:
    """As on a managed PostgreSQL: an owner without superuser migrates; the login role serves, bound to its tenants."""
    owner, database, password = f"wbt_owner_{RUN_ID}", f"wbt_owned_{RUN_ID}", secrets.token_urlsafe(18)
    admin = await asyncpg.connect(backends.admin_dsn)
    try:
        await admin.execute(f"CREATE ROLE {owner} LOGIN CREATEROLE PASSWORD '{password}'")
        await admin.execute(f"CREATE DATABASE {database} OWNER {owner}")
    finally:
        await admin.close()
    owner_dsn = as_user(with_database(backends.admin_dsn, database), owner, password)
    login_dsn = as_user(with_database(backends.admin_dsn, database), roles.login, urlsplit(roles.login_dsn).password or "")
    try:
        await migrate(owner_dsn)
        problems = await serving_role_problems(owner_dsn)
        assert [problem.split(f"{owner!r} ", 1)[1].split(" ")[0] for problem in problems] == ["has", "is", "owns"], problems
        assert await serving_role_problems(login_dsn) == []
        server = await server_factory(settings.replace(database_url=login_dsn, migrate_database_url=owner_dsn,
                                                       key_prefix=f"{settings.key_prefix}o"))
        try:
            a, b = f"oa-{RUN_ID}", f"ob-{RUN_ID}"
            await ingest(server, a, 2)
            await ingest(server, b, 1)
            # Erasure and the retention sweep run their SQL as this owner, under its forced row-level security.
            async with server.client(server.token(b, "admin")) as client:
                erased = await client.delete("/api/tenant", params={"confirm": b})
            assert erased.status_code == 200 and erased.json()["data"]["rows"] >= 3, erased.text
            db = await Database.connect(login_dsn, owner_dsn=owner_dsn, min_size=1, max_size=2)
            try:
                assert (await Retention(db, every_s=3600).sweep()).ran
            finally:
                await db.close()
        finally:
            await server.stop()
        conn = await asyncpg.connect(login_dsn)
        try:
            with pytest.raises(asyncpg.PostgresError):
                await conn.execute(f"SET ROLE {owner}")
            with pytest.raises(asyncpg.PostgresError):
                await conn.execute("CREATE TEMP TABLE events (client_id text)")
            async with conn.transaction():
                await conn.execute("SELECT set_config('role', $1, true), set_config('wallboard.tenant', $2, true)", APP_ROLE, b)
                forged = await conn.fetchval("SELECT count(*) FROM events")
        finally:
            await conn.close()
        owned = await asyncpg.connect(owner_dsn)
        try:
            async with owned.transaction():
                await owned.execute("SELECT set_config('wallboard.tenant', $1, true)", a)
                own = await owned.fetchval("SELECT count(*) FROM events")
            async with owned.transaction():
                await owned.execute("SELECT set_config('wallboard.tenant', $1, true)", b)
                erased_left = await owned.fetchval("SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM tenants)")
        finally:
            await owned.close()
        assert (forged, own, erased_left) == (0, 2, 0)
    finally:
        admin = await asyncpg.connect(backends.admin_dsn)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            await admin.execute(f"DROP ROLE IF EXISTS {owner}")
        finally:
            await admin.close()
