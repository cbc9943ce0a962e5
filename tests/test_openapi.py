"""``GET /openapi.json``: every HTTP route described; schemathesis finds no 5xx and no answer off its schema."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from starlette.routing import Route

from server.app import create_app
from server.core.config import Settings

from .conftest import RunningServer

Factory = Callable[[Settings], Awaitable[RunningServer]]


async def test_openapi_describes_every_route(server: RunningServer, settings: Settings) -> None:
    """/openapi.json answers without a token, is OpenAPI 3.1, and has every method and path the app routes."""
    async with server.client() as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    described = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    routed = {(method, route.path) for route in create_app(settings).routes if isinstance(route, Route)
              for method in route.methods or () if method != "HEAD"}
    assert len(routed) >= 30
    assert routed - described == set()
    assert described - routed == set()
    for (method, path) in routed:
        op = doc["paths"][path][method.lower()]
        assert op["responses"] and op["summary"]
        for name in [p.strip("{}") for p in path.split("/") if p.startswith("{")]:
            assert any(p["in"] == "path" and p["name"] == name for p in op["parameters"]), (method, path, name)
    post = doc["paths"]["/api/events"]["post"]
    assert "application/json" in post["requestBody"]["content"]
    assert set(doc["paths"]["/api/auth/whoami"]["get"]["responses"]["429"]["headers"]) >= {
        "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}


@pytest.mark.slow
@pytest.mark.timeout(420)
async def test_schemathesis_finds_no_server_error(server_factory: Factory, settings: Settings, tmp_path: Path) -> None:
    """schemathesis, with a real admin token, over every operation of /openapi.json: no 5xx, every answer matching its schema."""
    server = await server_factory(settings.replace(rate_read_token=0, rate_read_tenant=0, rate_ingest_token=0,
                                                   rate_ingest_tenant=0))
    token = server.token(f"fuzz-{secrets.token_hex(4)}", role="admin", sub="fuzzer")
    st = Path(sys.executable).with_name("st")
    command = [str(st), "run", f"{server.url}/openapi.json", "-H", f"Authorization: Bearer {token}",
               "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,"
                           "content_type_conformance",
               "--max-examples", os.environ.get("WALLBOARD_FUZZ_EXAMPLES", "25"), "--seed", "12",
               "--phases", "examples,coverage,fuzzing", "--workers", "2", "--request-timeout", "30",
               "--no-color", "--report", "junit", "--report-dir", str(tmp_path)]
    # The server runs in this event loop: wait for the CLI without blocking it.
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
                                                   env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    output, _ = await asyncio.wait_for(process.communicate(), 400)
    text = output.decode(errors="replace")
    print(text[-6000:])
    assert process.returncode == 0, text[-12000:]
