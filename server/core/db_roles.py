"""The serving login role, kept apart from the owner of the tables.

With ``WALLBOARD_MIGRATE_DATABASE_URL`` set, migrations run as that URL's user (the owner) and the
server's pool connects with ``DATABASE_URL`` as a login role that owns nothing, is a plain member of
the application role (``wallboard_app``) only, and so can neither become the owner (``SET ROLE``,
``set_config('role', …)``, ``SET SESSION AUTHORIZATION``) nor bypass row-level security.

The tenant of a transaction is bound by a proof the login role cannot forge (sql/008_tenant_binding.sql):
``wallboard.tenant_proof = sha256(key || sha256(key || "<backend pid>:<tenant>"))`` with a key only
the owner can read; the server reads it once through the owner's URL (:func:`read_tenant_key`).
"""

from __future__ import annotations

import hashlib
import logging

import asyncpg

from server.core.errors import ConfigError

log = logging.getLogger("wallboard.db")

LOGIN_ROLE = "wallboard_login"


def tenant_proof(key: bytes | None, pid: int, tenant: str) -> str:
    """The proof that binds ``tenant`` to the backend ``pid`` ('' without a key: the owner needs none)."""
    if key is None:
        return ""
    inner = hashlib.sha256(key + f"{pid}:{tenant}".encode()).digest()
    return hashlib.sha256(key + inner).hexdigest()


async def read_tenant_key(owner_dsn: str) -> bytes:
    """The tenant-binding key, read as the owner (WALLBOARD_MIGRATE_DATABASE_URL)."""
    try:
        conn = await asyncpg.connect(owner_dsn, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise ConfigError(f"WALLBOARD_MIGRATE_DATABASE_URL: cannot connect to PostgreSQL ({type(exc).__name__}): "
                          "check the URL and that the server runs") from None
    try:
        key = await conn.fetchval("SELECT key FROM tenant_binding_key")
    except asyncpg.PostgresError as exc:
        raise ConfigError(f"WALLBOARD_MIGRATE_DATABASE_URL cannot read the tenant-binding key ({type(exc).__name__}): "
                          "it must be the owner that ran `wallboard migrate`") from None
    finally:
        await conn.close()
    if key is None:
        raise ConfigError("the tenant-binding key is missing: run `wallboard migrate` with WALLBOARD_MIGRATE_DATABASE_URL")
    return bytes(key)


SERVING_ROLE_CHECK = """
SELECT r.rolname, r.rolsuper, r.rolbypassrls, r.rolcreaterole,
       pg_has_role(r.oid, c.relowner, 'MEMBER') AS owner_member,
       (SELECT count(*) FROM pg_class o WHERE o.relowner = r.oid
          AND o.relnamespace = c.relnamespace) AS owned
FROM pg_roles r, pg_class c
WHERE r.rolname = current_user AND c.oid = 'tenants'::regclass
"""


async def serving_role_problems(dsn: str) -> list[str]:
    """Why ``dsn``'s user could become the owner or read past row-level security ([] when it cannot)."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise ConfigError(f"DATABASE_URL: cannot connect to PostgreSQL as the serving role ({type(exc).__name__}): "
                          "check the URL, the role's password and that it may connect") from None
    try:
        row = await conn.fetchrow(SERVING_ROLE_CHECK)
    finally:
        await conn.close()
    problems = []
    if row["rolsuper"]:
        problems.append("is a superuser")
    if row["rolbypassrls"]:
        problems.append("has BYPASSRLS")
    if row["rolcreaterole"]:
        problems.append("has CREATEROLE (it could grant itself the owner)")
    if row["owner_member"]:
        problems.append("is the owner of the tables or a member of it")
    if row["owned"]:
        problems.append(f"owns {row['owned']} relation(s)")
    return [f"DATABASE_URL's role {row['rolname']!r} {problem}" for problem in problems]


def login_role_sql(name: str, app_role: str, password: str | None = None) -> str:
    """SQL (idempotent) that makes ``name`` a login role whose only power is membership of ``app_role``.

    Needs CREATEROLE (and, from PostgreSQL 16, ADMIN OPTION on ``app_role``); README shows it for a managed PostgreSQL.
    """
    for value in (name, app_role):
        if not value.replace("_", "").isalnum() or not value.isascii():
            raise ConfigError(f"role name {value!r} is malformed: expected letters, digits and _")
    secret = "NULL" if password is None else "'" + password.replace("'", "''") + "'"
    return f"""
DO $$
BEGIN
    CREATE ROLE {name} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE INHERIT;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
DO $$
BEGIN
    CREATE ROLE {app_role} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
ALTER ROLE {name} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE INHERIT PASSWORD {secret};
GRANT {app_role} TO {name};
"""
