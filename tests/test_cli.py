"""The command line: bad settings give one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from .conftest import TEST_SECRET


def run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WALLBOARD_", "DATABASE_URL", "REDIS_URL", "PORT"))}
    return subprocess.run([sys.executable, "-m", "server", *args], env={**base, **env}, capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess[str], names: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("wallboard: error:")]
    assert len(lines) == 1, result.stderr
    assert names in lines[0], lines[0]


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"DATABASE_URL": "nonsense", "REDIS_URL": "redis://127.0.0.1:6379"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://x@127.0.0.1:5432/db", "REDIS_URL": "http://nope"}, "REDIS_URL"),
        ({"PORT": "eighty"}, "PORT"),
        ({"WALLBOARD_JWT_SECRET": "short"}, "WALLBOARD_JWT_SECRET"),
        ({"WALLBOARD_JWT_PUBLIC_KEY": "/nonexistent/key.pem"}, "WALLBOARD_JWT_PUBLIC_KEY"),
        ({"WALLBOARD_ALLOWED_ORIGINS": "not an origin"}, "WALLBOARD_ALLOWED_ORIGINS"),
        ({"WALLBOARD_LOG_LEVEL": "LOUD"}, "WALLBOARD_LOG_LEVEL"),
    ],
)
def test_malformed_setting_stops_serve(env: dict[str, str], names: str) -> None:
    """`wallboard serve` with a malformed setting prints one line naming it and exits non-zero."""
    assert_one_line_error(run(["serve", "--port", "0"], env), names)


def test_unreadable_key_file(tmp_path: Path) -> None:
    """A key file that is not a PEM key is named in one line."""
    bad = tmp_path / "key.pem"
    bad.write_text("hello")
    assert_one_line_error(run(["serve"], {"WALLBOARD_JWT_PUBLIC_KEY": str(bad)}), "WALLBOARD_JWT_PUBLIC_KEY")


def test_unreachable_postgres(backends) -> None:  # type: ignore[no-untyped-def]
    """A PostgreSQL that does not answer is named in one line."""
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x", "REDIS_URL": backends.redis_url,
           "WALLBOARD_JWT_SECRET": TEST_SECRET}
    assert_one_line_error(run(["serve", "--port", "0"], env), "DATABASE_URL")


def test_unreachable_redis(database: str) -> None:
    """A Redis that does not answer is named in one line."""
    env = {"DATABASE_URL": database, "REDIS_URL": "redis://127.0.0.1:1/0", "WALLBOARD_JWT_SECRET": TEST_SECRET}
    assert_one_line_error(run(["serve", "--port", "0"], env), "REDIS_URL")


def test_missing_secret_with_external_servers(database: str, backends) -> None:  # type: ignore[no-untyped-def]
    """With external servers and no signing key configured, start-up names WALLBOARD_JWT_SECRET."""
    env = {"DATABASE_URL": database, "REDIS_URL": backends.redis_url}
    assert_one_line_error(run(["serve", "--port", "0"], env), "WALLBOARD_JWT_SECRET")


def test_token_command_mints_a_verifiable_token() -> None:
    """`wallboard token` prints a JWT with the asked claims, signed with the configured secret."""
    result = run(["token", "--tenant", "acme", "--role", "agent", "--sub", "a7", "--ttl", "15m"],
                 {"WALLBOARD_JWT_SECRET": TEST_SECRET})
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), TEST_SECRET, algorithms=["HS256"], audience="wallboard")
    assert (claims["client_id"], claims["role"], claims["sub"]) == ("acme", "agent", "a7")
    assert 890 <= claims["exp"] - claims["iat"] <= 900


def test_token_command_refuses_bad_tenant() -> None:
    """`wallboard token` refuses an ill-formed tenant id with one line."""
    result = run(["token", "--tenant", "a b", "--role", "admin"], {"WALLBOARD_JWT_SECRET": TEST_SECRET})
    assert result.returncode == 2
    assert "tenant" in result.stderr and "Traceback" not in result.stderr


def test_serve_demo_feeds_a_moving_wallboard(database: str, backends, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`wallboard serve --demo` fills tenant 'demo' with today's simulated traffic, visible in the live view, and links to it."""
    import time

    import httpx

    from server.core.auth import mint
    from server.core.config import Settings

    from .conftest import free_socket

    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WALLBOARD_", "DATABASE_URL", "REDIS_URL"))}
    env.update({"DATABASE_URL": database, "REDIS_URL": backends.redis_url, "WALLBOARD_JWT_SECRET": TEST_SECRET,
                "WALLBOARD_KEY_PREFIX": f"wbdemo{os.getpid()}", "WALLBOARD_LOG_LEVEL": "WARNING"})
    proc = subprocess.Popen([sys.executable, "-m", "server", "serve", "--demo", "--port", str(port)], env=env,
                            stderr=subprocess.PIPE, text=True)
    token = mint(Settings(jwt_secret=TEST_SECRET), tenant="demo", role="supervisor")
    try:
        deadline = time.monotonic() + 60
        offered = agents = 0
        while time.monotonic() < deadline and not (offered and agents):
            time.sleep(0.5)
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/metrics/live",
                                     headers={"Authorization": f"Bearer {token}"}, timeout=5)
            except httpx.TransportError:
                continue
            if response.status_code == 200:
                data = response.json()["data"]
                offered, agents = data["today"]["offered"], data["agents"]["logged_in"]
        assert offered > 0 and agents > 0, (offered, agents)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
    assert "/supervisor.html#token=eyJ" in err  # --demo prints links with demo tokens, even on external servers
