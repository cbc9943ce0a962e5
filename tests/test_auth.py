"""RFC 8725 negative suite: every bad token is a 401 with its own error code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from server.core.config import Settings

from .conftest import TEST_SECRET, RunningServer

WHOAMI = "/api/auth/whoami"


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"client_id": "acme", "role": "supervisor", "sub": "sam", "aud": "wallboard", "iat": now, "exp": now + 600}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def write_pem(tmp: Path, name: str, key: Any) -> tuple[str, str]:
    """Write the key pair as PEM files; return (public path, private PEM text)."""
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path = tmp / f"{name}.pub.pem"
    path.write_bytes(public)
    return str(path), private.decode()


async def get(server: RunningServer, token: str | None) -> httpx.Response:
    async with server.client(token) as client:
        return await client.get(WHOAMI)


def assert_401(response: httpx.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.fixture(scope="session")
async def rsa_server(tmp_path_factory: pytest.TempPathFactory, settings: Settings,
                     session_server_factory: Callable[[Settings], Awaitable[RunningServer]]) -> tuple[RunningServer, str, str]:
    """A server configured for RS256 with an issuer; returns it, its private key and its public PEM text."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path, private = write_pem(tmp_path_factory.mktemp("rsa"), "rsa", key)
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "WALLBOARD_JWT_PUBLIC_KEY": path, "WALLBOARD_JWT_ISSUER": "https://idp.example"}
    configured = Settings.from_env(env).replace(key_prefix=settings.key_prefix)
    assert configured.jwt_algorithm == "RS256"
    return await session_server_factory(configured), private, Path(path).read_text()


async def test_valid_hs256_token_is_accepted(server: RunningServer) -> None:
    """A well-formed HS256 token reaches the route and its identity is echoed back."""
    response = await get(server, jwt.encode(claims(), TEST_SECRET, algorithm="HS256"))
    assert response.status_code == 200
    assert response.json()["data"]["client_id"] == "acme"
    assert response.json()["data"]["role"] == "supervisor"


async def test_no_token(server: RunningServer) -> None:
    """A request without a token is refused with token_missing."""
    assert_401(await get(server, None), "token_missing")


async def test_alg_none_is_refused(server: RunningServer) -> None:
    """An unsigned `alg: none` token is refused before any claim is read."""
    token = jwt.encode(claims(), None, algorithm="none")
    assert_401(await get(server, token), "token_algorithm")


async def test_bad_signature(server: RunningServer) -> None:
    """A token signed with another secret is refused."""
    token = jwt.encode(claims(), "another-secret-" + "y" * 40, algorithm="HS256")
    assert_401(await get(server, token), "token_signature")


async def test_tampered_payload(server: RunningServer) -> None:
    """Changing the tenant in a signed token breaks its signature."""
    head, _, sig = jwt.encode(claims(), TEST_SECRET, algorithm="HS256").split(".")
    forged = jwt.encode(claims(client_id="victim"), TEST_SECRET, algorithm="HS256").split(".")[1]
    assert_401(await get(server, f"{head}.{forged}.{sig}"), "token_signature")


async def test_garbage_token(server: RunningServer) -> None:
    """A bearer value that is not a JWT is refused as malformed."""
    assert_401(await get(server, "not-a-jwt"), "token_malformed")


async def test_wrong_audience(server: RunningServer) -> None:
    """A token for another audience is refused."""
    assert_401(await get(server, jwt.encode(claims(aud="billing"), TEST_SECRET, algorithm="HS256")), "token_audience")


async def test_missing_audience(server: RunningServer) -> None:
    """A token without aud is refused (aud must match)."""
    assert_401(await get(server, jwt.encode(claims(aud=None), TEST_SECRET, algorithm="HS256")), "token_claims")


async def test_missing_exp(server: RunningServer) -> None:
    """A token without exp is refused: exp is required."""
    assert_401(await get(server, jwt.encode(claims(exp=None), TEST_SECRET, algorithm="HS256")), "token_claims")


async def test_expired(server: RunningServer) -> None:
    """A token that expired beyond the leeway is refused."""
    now = int(time.time())
    token = jwt.encode(claims(iat=now - 3600, exp=now - 120), TEST_SECRET, algorithm="HS256")
    assert_401(await get(server, token), "token_expired")


async def test_expired_within_leeway_is_accepted(server: RunningServer) -> None:
    """A token that expired seconds ago is still accepted (clock skew leeway)."""
    now = int(time.time())
    token = jwt.encode(claims(iat=now - 3600, exp=now - 5), TEST_SECRET, algorithm="HS256")
    assert (await get(server, token)).status_code == 200


async def test_a_token_that_served_is_refused_once_it_expires(server_factory: Callable[[Settings], Awaitable[RunningServer]],
                                                               settings: Settings) -> None:
    """A token accepted again and again (the server remembers verified tokens) is refused the moment it expires."""
    server = await server_factory(settings.replace(jwt_leeway_s=0))
    exp = int(time.time()) + 2
    token = jwt.encode(claims(exp=exp), TEST_SECRET, algorithm="HS256")
    for _ in range(3):
        assert (await get(server, token)).status_code == 200
    await asyncio.sleep(exp + 1.2 - time.time())
    assert_401(await get(server, token), "token_expired")
    assert_401(await get(server, token), "token_expired")


async def test_nbf_in_future(server: RunningServer) -> None:
    """A token not valid before a future time is refused."""
    token = jwt.encode(claims(nbf=int(time.time()) + 600), TEST_SECRET, algorithm="HS256")
    assert_401(await get(server, token), "token_not_yet_valid")


@pytest.mark.parametrize("tenant", [None, "", "a" * 65, "acme corp", "acme/../x", 42, "ümlaut"])
async def test_bad_client_id(server: RunningServer, tenant: Any) -> None:
    """A missing or ill-formed client_id is refused."""
    body = claims()
    if tenant is None:
        del body["client_id"]
    else:
        body["client_id"] = tenant
    assert_401(await get(server, jwt.encode(body, TEST_SECRET, algorithm="HS256")), "token_tenant")


@pytest.mark.parametrize("role", [None, "root", "Supervisor", ""])
async def test_unknown_role(server: RunningServer, role: Any) -> None:
    """A missing or unknown role is refused."""
    assert_401(await get(server, jwt.encode(claims(role=role), TEST_SECRET, algorithm="HS256")), "token_role")


async def test_agent_token_needs_sub(server: RunningServer) -> None:
    """An agent token without sub (its agent_id) is refused."""
    assert_401(await get(server, jwt.encode(claims(role="agent", sub=None), TEST_SECRET, algorithm="HS256")), "token_claims")


async def test_rs256_token_accepted_when_configured(rsa_server: tuple[RunningServer, str, str]) -> None:
    """With a public key configured, an RS256 token with the right issuer is accepted."""
    server, private, _ = rsa_server
    token = jwt.encode(claims(iss="https://idp.example"), private, algorithm="RS256")
    assert (await get(server, token)).status_code == 200


async def test_hs256_refused_when_rs256_configured(rsa_server: tuple[RunningServer, str, str]) -> None:
    """The key-confusion attack: an HS256 token signed with the public key as secret is refused."""
    server, _, public_pem = rsa_server
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    import orjson

    head = b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
    body = b64(orjson.dumps(claims(iss="https://idp.example")))
    sig = b64(hmac.new(public_pem.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    assert_401(await get(server, f"{head}.{body}.{sig}"), "token_algorithm")


async def test_rs256_refused_when_hs256_configured(server: RunningServer) -> None:
    """An RS256 token sent to an HS256 server is refused, whatever its signature."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_401(await get(server, jwt.encode(claims(), key, algorithm="RS256")), "token_algorithm")


async def test_wrong_issuer(rsa_server: tuple[RunningServer, str, str]) -> None:
    """When an issuer is configured, a token from another issuer is refused."""
    server, private, _ = rsa_server
    assert_401(await get(server, jwt.encode(claims(iss="https://evil.example"), private, algorithm="RS256")), "token_issuer")


async def test_missing_issuer(rsa_server: tuple[RunningServer, str, str]) -> None:
    """When an issuer is configured, a token without iss is refused."""
    server, private, _ = rsa_server
    assert_401(await get(server, jwt.encode(claims(), private, algorithm="RS256")), "token_claims")


async def test_es256_configured(tmp_path: Path, settings: Settings,
                                server_factory: Callable[[Settings], Awaitable[RunningServer]]) -> None:
    """An EC P-256 public key selects ES256: ES256 tokens pass, RS256 ones are refused."""
    key = ec.generate_private_key(ec.SECP256R1())
    path, private = write_pem(tmp_path, "ec", key)
    configured = Settings.from_env({"DATABASE_URL": settings.database_url or "", "REDIS_URL": settings.redis_url or "",
                                    "WALLBOARD_JWT_PUBLIC_KEY": path})
    assert configured.jwt_algorithm == "ES256"
    server = await server_factory(configured)
    assert (await get(server, jwt.encode(claims(), private, algorithm="ES256"))).status_code == 200
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_401(await get(server, jwt.encode(claims(), other, algorithm="RS256")), "token_algorithm")
