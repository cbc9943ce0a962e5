"""Tokens signed with an identity provider's rotating keys (a JWKS served here over HTTP, or a file): no restart."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from server.core.auth import TokenVerifier
from server.core.config import Settings
from server.core.errors import ConfigError, Unauthorized

from .conftest import RunningServer


class Key:
    """A private signing key with its kid and its public JWK."""

    def __init__(self, kid: str, kind: str = "RSA") -> None:
        self.kid = kid
        if kind == "RSA":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.alg = "RS256"
            self.jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.alg = "ES256"
            self.jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key()))
        self.jwk.update(kid=kid, use="sig", alg=self.alg)

    def token(self, tenant: str = "idp", role: str = "supervisor", *, kid: str | None = "") -> str:
        now = int(time.time())
        claims = {"client_id": tenant, "role": role, "sub": "sam", "aud": "wallboard", "iat": now, "exp": now + 600,
                  "jti": uuid.uuid4().hex}
        headers = {} if kid is None else {"kid": kid or self.kid}
        return jwt.encode(claims, self.private, algorithm=self.alg, headers=headers)

    def confused(self) -> str:
        """An HS256 token "signed" with this key's public PEM as the HMAC secret (the RFC 8725 confusion attack)."""
        pem = self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
        genuine = self.token().split(".")
        header = base64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.kid}).encode())
        signed = f"{header}.{genuine[1]}"
        return f"{signed}.{base64url(hmac.new(pem, signed.encode(), hashlib.sha256).digest())}"


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Provider:
    """An identity provider's JWKS endpoint on 127.0.0.1, in a thread; ``publish`` rotates its keys."""

    def __init__(self) -> None:
        self.document: bytes = b'{"keys": []}'
        self.fetches = 0
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                provider.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(provider.document)))
                self.end_headers()
                self.wfile.write(provider.document)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def publish(self, *keys: Key) -> None:
        self.document = json.dumps({"keys": [k.jwk for k in keys]}).encode()


@pytest.fixture
def provider() -> Iterator[Provider]:
    """A JWKS endpoint served by this test process, stopped afterwards."""
    p = Provider()
    p.thread.start()
    try:
        yield p
    finally:
        p.httpd.shutdown()
        p.httpd.server_close()


async def whoami(server: RunningServer, token: str) -> tuple[int, str | None]:
    async with server.client(token) as client:
        response = await client.get("/api/auth/whoami")
    body = response.json()
    return response.status_code, (body["data"]["client_id"] if response.status_code == 200 else body["error"]["code"])


@pytest.mark.timeout(60)
async def test_keys_rotate_at_the_provider_without_a_restart(provider: Provider, settings: Settings,
                                                             server_factory: Callable[[Settings], Awaitable[RunningServer]]) -> None:
    """A new kid is fetched when a token names it, a retired key stops working, several keys work at once."""
    first, second, elliptic = Key("k1"), Key("k2"), Key("k3", "EC")
    provider.publish(first)
    server = await server_factory(settings.replace(jwt_secret=None, jwt_jwks_url=provider.url, jwt_jwks_cache_s=3,
                                                   jwt_jwks_cooldown_s=1))
    remembered = first.token("kept")
    assert await whoami(server, first.token()) == (200, "idp")
    assert await whoami(server, remembered) == (200, "kept")  # verified once: the server remembers it
    assert await whoami(server, second.token()) == (401, "token_kid")  # not published yet
    provider.publish(first, second, elliptic)  # the provider rotates: k2 and k3 join k1
    await asyncio.sleep(1.1)  # past the cooldown of the last fetch
    assert await whoami(server, second.token()) == (200, "idp")
    assert await whoami(server, elliptic.token()) == (200, "idp")
    assert await whoami(server, first.token()) == (200, "idp")
    # Made-up kids in a burst cost at most one fetch (the cooldown), then are refused without one.
    fetches = provider.fetches
    for _ in range(20):
        assert await whoami(server, first.token(kid=uuid.uuid4().hex)) == (401, "token_kid")
    assert provider.fetches - fetches <= 1
    # RFC 8725: the algorithm is the key's; an HS256 token "signed" with the public key is refused.
    assert await whoami(server, first.confused()) == (401, "token_algorithm")
    assert await whoami(server, first.token(kid=None)) == (401, "token_kid")
    assert await whoami(server, elliptic.token(kid="k1")) == (401, "token_algorithm")
    # k1 is retired: once the cached set expires, a new token signed with it is refused.
    provider.publish(second, elliptic)
    await asyncio.sleep(3.2)
    assert await whoami(server, first.token()) == (401, "token_kid")
    assert await whoami(server, remembered) == (401, "token_kid")  # remembered, yet its key is gone
    assert await whoami(server, second.token("other", "admin")) == (200, "other")


def test_a_jwks_file_is_read_again_on_an_unknown_kid(tmp_path: Path) -> None:
    """Keys written to the JWKS file are taken without a restart; a file without usable keys stops start-up."""
    first, second = Key("f1"), Key("f2", "EC")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [first.jwk]}))
    verifier = TokenVerifier(Settings(jwt_jwks_file=path, jwt_jwks_cooldown_s=0, jwt_jwks_cache_s=1))
    assert verifier.verify(first.token()).tenant == "idp"
    with pytest.raises(Unauthorized) as refused:
        verifier.verify(second.token())
    assert refused.value.code == "token_kid"
    path.write_text(json.dumps({"keys": [first.jwk, second.jwk]}))
    assert verifier.verify(second.token("t2")).tenant == "t2"
    # A token verified (and remembered) before its key leaves the file is refused once the file is read again.
    kept = first.token("kept")
    assert verifier.verify(kept).tenant == "kept"
    path.write_text(json.dumps({"keys": [second.jwk]}))
    time.sleep(1.1)  # past the set's cache lifetime
    with pytest.raises(Unauthorized) as retired:
        verifier.verify(kept)
    assert retired.value.code == "token_kid"
    path.write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]}))
    with pytest.raises(ConfigError, match="WALLBOARD_JWT_JWKS_FILE"):
        TokenVerifier(Settings(jwt_jwks_file=path))


def test_one_source_of_keys_and_a_named_error(tmp_path: Path) -> None:
    """A JWKS with a secret, or a JWKS file that is missing, stops start-up with one line naming the settings."""
    with pytest.raises(ConfigError, match="WALLBOARD_JWT_SECRET and WALLBOARD_JWT_JWKS_URL"):
        Settings.from_env({"WALLBOARD_JWT_SECRET": "s" * 40, "WALLBOARD_JWT_JWKS_URL": "https://idp.example/jwks"})
    with pytest.raises(ConfigError, match="WALLBOARD_JWT_JWKS_URL"):
        Settings.from_env({"WALLBOARD_JWT_JWKS_URL": "ftp://idp.example/jwks"})
    with pytest.raises(ConfigError, match="WALLBOARD_JWT_JWKS_FILE"):
        Settings.from_env({"WALLBOARD_JWT_JWKS_FILE": str(tmp_path / "missing.json")})
    loaded = Settings.from_env({"WALLBOARD_JWT_JWKS_URL": "https://idp.example/jwks", "WALLBOARD_JWT_JWKS_COOLDOWN_S": "5"})
    assert (loaded.jwt_jwks_url, loaded.jwt_jwks_cooldown_s, loaded.jwt_jwks_cache_s) == ("https://idp.example/jwks", 5, 300)
