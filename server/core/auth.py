"""JWT → :class:`Principal`. Nothing else in the server decodes tokens.

The rules are API.md "Identity" and RFC 8725: exactly one algorithm is
accepted (the configured one, never ``none``, never HS256 when a public key is
configured), ``exp`` is required, ``aud`` must match, ``iss`` must match when
configured, ``nbf``/``iat`` are honoured with a small leeway, and the
``client_id`` and ``role`` claims are checked for shape before any data is
touched. Every failure is an :class:`~server.core.errors.Unauthorized` with its own
code so that a connector's author can tell what is wrong.

With an identity provider's JWKS (``server/core/jwks.py``) the key is chosen by the token's
``kid`` and the algorithm is that key's own (RS256 or ES256); the rest is the same.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

from server.core import logs
from server.core.config import Settings
from server.core.errors import ConfigError, Forbidden, Unauthorized
from server.core.jwks import KeySet

TENANT_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
SUB_MAX = 128
VERIFIED_KEPT = 4096  # verified tokens remembered per process


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    INGEST = "ingest"


# Who may do what, by the name routes use. API.md "Identity" and the route tables.
READ_LIVE = frozenset({Role.AGENT, Role.SUPERVISOR, Role.ADMIN})
READ_ALL = frozenset({Role.SUPERVISOR, Role.ADMIN})
INGEST = frozenset({Role.INGEST, Role.ADMIN})
ADMIN = frozenset({Role.ADMIN})
ANY_READER = frozenset({Role.AGENT, Role.SUPERVISOR, Role.ADMIN})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the tenant, the role and the subject, from a verified token only."""

    tenant: str
    role: Role
    sub: str | None
    exp: float

    def require(self, allowed: frozenset[Role]) -> Principal:
        """Return self when the role is allowed, else raise Forbidden (403 / 4403)."""
        if self.role not in allowed:
            wanted = ", ".join(sorted(allowed))
            raise Forbidden(
                f"role {self.role.value!r} may not do this: expected one of {wanted}",
                code="role_forbidden",
            )
        return self

    def may_see_agent(self, agent_id: str) -> bool:
        """Agents see only themselves; supervisors and admins see every agent of the tenant."""
        return self.role != Role.AGENT or self.sub == agent_id


class TokenVerifier:
    """Verifies tokens against the configured key and claims."""

    def __init__(self, settings: Settings) -> None:
        self.keys: KeySet | None = None
        if settings.jwt_jwks_url is not None or settings.jwt_jwks_file is not None:
            self.keys = KeySet(settings)
            self.key = None
            self.algorithm = "RS256 or ES256 (per key)"
        elif settings.jwt_public_key is not None:
            self.key: Any = settings.jwt_public_key
            self.algorithm = settings.jwt_algorithm
        elif settings.jwt_secret is not None:
            self.key = settings.jwt_secret
            self.algorithm = "HS256"
        else:
            raise ConfigError(
                "WALLBOARD_JWT_SECRET is not set: set it (HS256), or set WALLBOARD_JWT_PUBLIC_KEY "
                "to a PEM file (RS256/ES256), or run with neither DATABASE_URL nor REDIS_URL to use "
                "the embedded default, which keeps its own secret"
            )
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self.leeway = settings.jwt_leeway_s
        self._verified: dict[str, tuple[Principal, str | None]] = {}  # token → its principal and kid, oldest first

    def verify(self, token: str | None) -> Principal:
        """Decode and check a token; raise Unauthorized with a precise code when it fails.

        A token that verified is remembered (the newest ``VERIFIED_KEPT`` of them) until its
        ``exp`` plus the leeway: connectors and wallboards send the same token with every
        request, and neither its signature nor its claims can change; only the clock is
        checked again. Decoding it each time was about a tenth of the server's CPU per ingest request.
        """
        known = self.known(token)
        if known is not None:
            logs.bind(tenant=known.tenant)  # the request's log lines carry the verified tenant
            return known
        principal, kid = self._decode(token)  # new, expired or its key retired: decoded, to fail with its own code
        assert token is not None
        if len(self._verified) >= VERIFIED_KEPT:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = principal, kid
        logs.bind(tenant=principal.tenant)
        return principal

    def known(self, token: str | None) -> Principal | None:
        """The principal of a token verified before and not expired since, without decoding it; else None.

        With an identity provider's key set, the token's key must still be in it (the set as cached,
        see server/core/jwks.py): a token whose key was retired stops verifying once the set is read
        again, remembered or not. None says nothing against the token: :meth:`verify` decides."""
        if not token:
            return None
        known = self._verified.get(token)
        if known is None:
            return None
        principal, kid = known
        if time.time() > principal.exp + self.leeway or (self.keys is not None and not self.keys.holds(kid)):
            del self._verified[token]
            return None
        return principal

    def _decode(self, token: str | None) -> tuple[Principal, str | None]:
        if not token:
            raise Unauthorized("no token: send `Authorization: Bearer <jwt>`", code="token_missing")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise Unauthorized("the token is not a well-formed JWT", code="token_malformed") from None
        alg = header.get("alg")
        key, algorithm = self.key, self.algorithm
        if self.keys is not None:
            jwk = self.keys.key_for(header.get("kid"))
            key, algorithm = jwk.key, jwk.algorithm_name
        if alg != algorithm:
            raise Unauthorized(
                f"token algorithm {alg!r} is not accepted: expected {algorithm}",
                code="token_algorithm",
            )
        options = {"require": ["exp"], "verify_iss": self.issuer is not None}
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options=options,  # type: ignore[arg-type]
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired: get a fresh one", code="token_expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("the token is not valid yet (nbf/iat in the future)", code="token_not_yet_valid") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized(f"token audience is wrong: expected aud {self.audience!r}", code="token_audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized(f"token issuer is wrong: expected iss {self.issuer!r}", code="token_issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the token has no {exc.claim!r} claim: it is required", code="token_claims") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("the token signature does not verify", code="token_signature") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the token is invalid: {exc}", code="token_invalid") from None
        return self._principal(claims), header.get("kid")

    @staticmethod
    def _principal(claims: dict[str, Any]) -> Principal:
        tenant = claims.get("client_id")
        if not isinstance(tenant, str) or not TENANT_RE.fullmatch(tenant):
            raise Unauthorized(
                "the token's client_id claim is missing or ill-formed: expected 1-64 characters of [A-Za-z0-9_.-]",
                code="token_tenant",
            )
        try:
            role = Role(claims.get("role"))
        except ValueError:
            raise Unauthorized(
                f"the token's role {claims.get('role')!r} is unknown: expected agent, supervisor, admin or ingest",
                code="token_role",
            ) from None
        sub = claims.get("sub")
        if sub is not None and (not isinstance(sub, str) or not 0 < len(sub) <= SUB_MAX):
            raise Unauthorized(f"the token's sub claim must be a string of 1-{SUB_MAX} characters", code="token_claims")
        if role == Role.AGENT and sub is None:
            raise Unauthorized("an agent token needs a sub claim: the agent_id", code="token_claims")
        return Principal(tenant=tenant, role=role, sub=sub, exp=float(claims["exp"]))


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be `Bearer <jwt>`", code="token_missing")
    return token.strip()


def parse_ttl(text: str) -> int:
    """'90s', '15m', '8h', '30d' or plain seconds → seconds."""
    match = re.fullmatch(r"(\d+)([smhd]?)", text.strip())
    if not match:
        raise ValueError(f"ttl {text!r} is malformed: expected e.g. 900, 15m, 8h or 30d")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def mint(settings: Settings, *, tenant: str, role: str, sub: str | None = None, ttl_s: int = 8 * 3600,
         extra: dict[str, Any] | None = None) -> str:
    """Sign a token with the configured secret or private key (for `wallboard token`, demos, tests)."""
    if settings.jwt_jwks_url is not None or settings.jwt_jwks_file is not None:
        raise ConfigError("WALLBOARD_JWT_JWKS_URL/_FILE is set: tokens come from the identity provider, not from here")
    if not TENANT_RE.fullmatch(tenant):
        raise ValueError(f"tenant {tenant!r} is ill-formed: expected 1-64 characters of [A-Za-z0-9_.-]")
    Role(role)
    now = int(time.time())
    claims: dict[str, Any] = {"client_id": tenant, "role": role, "aud": settings.jwt_audience,
                              "iat": now, "exp": now + ttl_s, "jti": secrets.token_hex(8)}
    if sub is not None:
        claims["sub"] = sub
    if settings.jwt_issuer is not None:
        claims["iss"] = settings.jwt_issuer
    claims.update(extra or {})
    if settings.jwt_public_key is not None:
        if settings.jwt_private_key is None:
            raise ConfigError(
                "WALLBOARD_JWT_PRIVATE_KEY is not set: minting RS256/ES256 tokens needs the PEM private key"
            )
        return jwt.encode(claims, settings.jwt_private_key, algorithm=settings.jwt_algorithm)
    if settings.jwt_secret is None:
        raise ConfigError("WALLBOARD_JWT_SECRET is not set: minting HS256 tokens needs it")
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
