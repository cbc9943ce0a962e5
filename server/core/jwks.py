"""Signing keys from an identity provider: a JWKS URL or file, several keys at once, chosen by ``kid``.

A key rotation needs no restart. The URL is read through PyJWT's ``PyJWKClient``: the key set
is cached for ``WALLBOARD_JWT_JWKS_CACHE_S`` and fetched again at once when a token names a
``kid`` the cache does not hold, at most once per ``WALLBOARD_JWT_JWKS_COOLDOWN_S`` (so tokens
with made-up ``kid`` values cannot make the server hammer the provider). A file is read again
on the same two occasions. Only asymmetric signing keys are used (RS256, ES256: RFC 8725 wants
no HMAC key from a published set), each with its own algorithm, which the token must name.

Trade-off, stated plainly: ``PyJWKClient`` fetches with blocking ``urllib``, inside the event
loop, with a 5-second timeout. It does so only on a cache expiry or an unknown ``kid`` after
the cooldown, and a verified token is remembered until it expires (``TokenVerifier``), so a
serving process fetches a few times an hour at most.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

from server.core.config import KEY_ALGORITHMS, Settings
from server.core.errors import ConfigError, Unauthorized

log = logging.getLogger(__name__)
FETCH_TIMEOUT_S = 5.0


class KeySet:
    """The identity provider's signing keys by ``kid``; see the module docstring for the refresh rules."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.jwt_jwks_url
        self.path = settings.jwt_jwks_file
        self.cache_s = settings.jwt_jwks_cache_s
        self.cooldown_s = settings.jwt_jwks_cooldown_s
        self.setting = "WALLBOARD_JWT_JWKS_URL" if self.url is not None else "WALLBOARD_JWT_JWKS_FILE"
        self._client = (PyJWKClient(self.url, cache_jwk_set=True, lifespan=self.cache_s, timeout=FETCH_TIMEOUT_S,
                                    cooldown_duration=self.cooldown_s) if self.url is not None else None)
        self._keys: dict[str, PyJWK] = {}
        self._loaded_at = 0.0
        try:
            found = self._client.get_signing_keys() if self._client is not None else self._read_file()
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, OSError, ValueError) as exc:
            raise ConfigError(f"{self.setting} gives no usable key set ({exc}): expected a JWKS "
                              '({"keys": [...]}) with RS256 or ES256 signing keys, each with a "kid"') from None
        if not [k for k in found if _usable(k)]:
            raise ConfigError(f"{self.setting} holds no RS256 or ES256 signing key with a kid: expected at least one")

    def key_for(self, kid: object) -> PyJWK:
        """The signing key named ``kid``, refreshing the set once when it is unknown; else Unauthorized."""
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("the token has no kid header: expected the id of one of the identity provider's keys",
                               code="token_kid")
        try:
            key = self._client.get_signing_key(kid) if self._client is not None else self._from_file(kid)
        except jwt.PyJWKClientConnectionError as exc:
            log.warning("auth.jwks_unreachable", extra={"error": str(exc)[:200]})
            raise Unauthorized(f"the signing key {kid[:64]!r} is unknown and the key set cannot be fetched now",
                               code="token_kid") from None
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, jwt.PyJWKError):
            key = None
        if key is None or not _usable(key):
            raise Unauthorized(f"the signing key {kid[:64]!r} is not in the identity provider's key set",
                               code="token_kid")
        return key

    def holds(self, kid: object) -> bool:
        """Whether ``kid`` names a usable key of the set (refreshed on the same rules as :meth:`key_for`)."""
        try:
            self.key_for(kid)
        except Unauthorized:
            return False
        return True

    def _from_file(self, kid: str) -> PyJWK | None:
        now = time.monotonic()
        stale = now - self._loaded_at >= self.cache_s
        if kid not in self._keys and now - self._loaded_at >= self.cooldown_s or stale:
            try:
                self._read_file()
            except (OSError, ValueError, jwt.PyJWKSetError) as exc:
                log.warning("auth.jwks_unreadable", extra={"error": str(exc)[:200]})  # keep the keys we have
                self._loaded_at = now
        return self._keys.get(kid)

    def _read_file(self) -> list[PyJWK]:
        assert self.path is not None
        found = PyJWKSet.from_json(Path(self.path).read_text()).keys
        self._keys = {k.key_id: k for k in found if _usable(k) and k.key_id}
        self._loaded_at = time.monotonic()
        return found


def _usable(key: PyJWK) -> bool:
    return bool(key.key_id) and key.public_key_use in ("sig", None) and key.algorithm_name in KEY_ALGORITHMS
