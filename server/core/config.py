"""Settings: read once from the environment into one frozen object.

This module is the only reader of ``os.environ``. A missing or malformed
value raises :class:`~server.core.errors.ConfigError` whose message is one line
naming the setting and the fix; the CLI prints it and exits non-zero.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from server.core.errors import ConfigError

DEFAULT_AUDIENCE = "wallboard"
HMAC_ALGORITHMS = ("HS256",)
KEY_ALGORITHMS = ("RS256", "ES256")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the server is configured with. Build it with :meth:`from_env`."""

    database_url: str | None = None
    redis_url: str | None = None
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key: str | None = None  # PEM text, read from WALLBOARD_JWT_PUBLIC_KEY (a path)
    jwt_private_key: str | None = field(default=None, repr=False)  # PEM, for `wallboard token` only
    jwt_algorithm: str = "HS256"
    jwt_audience: str = DEFAULT_AUDIENCE
    jwt_issuer: str | None = None
    jwt_leeway_s: int = 30
    allowed_origins: tuple[str, ...] = ()
    data_dir: Path = Path(".wallboard")
    port: int = 8000
    key_prefix: str = "wb"
    max_body_bytes: int = 5 * 1024 * 1024
    max_events: int = 10_000
    # Group commit (server/live/committer.py): requests of a tenant behind its commit share the next one.
    ingest_group_max_events: int = 1000
    ingest_group_inflight: int = 1
    ingest_apply_ahead: int = 4  # groups of a tenant answered once committed, before their apply to Redis ended
    live_queues_max: int = 1000
    live_agents_max: int = 2000
    ws_render_share: float = 0.1
    db_pool_min: int = 2
    db_pool_max: int = 10
    redis_pool_max: int = 64
    scorecard_refresh_s: int = 300
    app_role: str = "wallboard_app"
    log_level: str = "INFO"
    log_format: str = "json"
    ws_tick_ms: int = 250
    ws_refresh_s: float = 5.0
    ws_max_connections_per_tenant: int = 5000
    ws_max_messages_per_minute: int = 120
    ws_max_message_bytes: int = 64 * 1024
    ws_auth_timeout_s: float = 5.0
    ws_send_timeout_s: float = 10.0
    ws_token_grace_s: float = 30.0
    ws_ping_interval_s: float = 20.0
    settings_cache_s: int = 300  # longest a process serves cached tenant settings whose change announcement it missed
    live_cache_tenants: int = 10_000  # tenants whose latest rendering is kept for REST polls (server/live/renderings.py)
    ws_direct_writes: bool = True  # frames straight to uvicorn's transport (server/api/wire.py), else the ASGI send
    forecast_every_s: int = 3600
    forecast_days: int = 14
    forecast_target_sl: float = 0.8
    alerts_every_s: int = 1
    gc_freeze_every_s: int = 10
    jwt_jwks_url: str | None = None  # an identity provider's JWKS (exclusive with the secret and the PEM key)
    jwt_jwks_file: Path | None = None  # or a JWKS file, read again on an unknown kid
    jwt_jwks_cache_s: int = 300
    jwt_jwks_cooldown_s: int = 30
    live_sweep_s: int = 2
    live_pending_age_s: int = 5
    live_check_s: int = 2
    live_reconcile_s: int = 60
    live_active_s: int = 3600
    # Budgets: one tenant's share of the shared pools, request rates, WebSocket caps (0 = off for rates).
    db_tenant_max: int = 6
    db_tenant_wait_s: int = 5
    redis_tenant_max: int = 16
    rate_window_s: int = 60
    rate_ingest_tenant: int = 6000
    rate_ingest_token: int = 3000
    rate_read_tenant: int = 6000
    rate_read_token: int = 1200
    ws_max_connections: int = 20_000
    ws_max_per_address: int = 1000
    ws_max_streams_per_tenant: int = 200
    ws_max_subscribes_per_minute: int = 20
    # Bad input, exports and slow clients
    max_request_bytes: int = 1024 * 1024
    queue_log_max_lines: int = 50_000
    export_max_per_tenant: int = 2
    export_max_per_process: int = 4
    http_send_timeout_s: float = 30.0
    db_statement_timeout_s: float = 30.0
    db_idle_in_transaction_timeout_s: float = 10.0
    http_limit_concurrency: int = 20_000
    http_keepalive_timeout_s: float = 5.0
    http_header_timeout_s: float = 10.0
    migrate_database_url: str | None = None  # the owner, for migrations only; DATABASE_URL is then a login role
    history_monthly: bool = True
    # Reports that deliver themselves and alert webhooks: server/core/outbound.py,
    # server/core/mail.py, server/analytics/scheduler.py, server/analytics/alert_hooks.py.
    smtp_url: str | None = field(default=None, repr=False)  # smtp://user:pass@host:port, or smtps:// (TLS from the start)
    smtp_from: str = "wallboard@localhost"
    webhook_allow_private: bool = False  # deliver to private, loopback and link-local addresses too
    webhook_timeout_s: float = 10.0
    webhook_per_tenant: int = 4  # deliveries of one tenant in flight at once per process
    delivery_attempts: int = 4  # tries of one delivery before it is given up
    delivery_backoff_s: float = 2.0  # first wait between tries; each next one is 4 times longer (with jitter)
    schedules_poll_s: float = 30.0  # how often each process looks for due report schedules
    schedules_max_per_tenant: int = 50
    # -- retention, erasure, read replica (server/history/retention.py, server/live/erasure.py) --
    retention_every_s: int = 3600  # seconds between retention sweeps; 0: no sweep in this process
    retention_batch_rows: int = 5000  # rows per delete transaction of retention and erasure
    database_replica_url: str | None = None  # a streaming replica: history reads use a pool on it when set
    # -- metrics and workers (GET /metrics, serve --workers) --
    metrics_token: str | None = None  # WALLBOARD_METRICS_TOKEN: when set, /metrics wants it as a bearer token
    metrics_sample_s: float = 2.0  # WALLBOARD_METRICS_SAMPLE_S: how often gauges (clients, pools) are sampled
    worker_id: str | None = None  # WALLBOARD_WORKER_ID: set by `serve --workers N` for each worker it runs

    @property
    def embedded(self) -> bool:
        """True when neither DATABASE_URL nor REDIS_URL is set: run the private servers."""
        return self.database_url is None and self.redis_url is None

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed (used once the embedded servers are up)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting; raise ConfigError naming the first bad one."""
        env = os.environ if environ is None else environ
        get = _Reader(env)
        secret = get.str("WALLBOARD_JWT_SECRET")
        public_key_path = get.str("WALLBOARD_JWT_PUBLIC_KEY")
        private_key_path = get.str("WALLBOARD_JWT_PRIVATE_KEY")
        if secret is not None and public_key_path is not None:
            raise ConfigError(
                "WALLBOARD_JWT_SECRET and WALLBOARD_JWT_PUBLIC_KEY are both set: "
                "set exactly one (HS256 secret, or the PEM public key for RS256/ES256)"
            )
        if secret is not None and len(secret) < 32:
            raise ConfigError(
                "WALLBOARD_JWT_SECRET is too short: expected at least 32 characters "
                "(RFC 7518 wants as many bits as the hash); generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        jwks_url = get.url("WALLBOARD_JWT_JWKS_URL", ("https", "http"))
        jwks_file = get.str("WALLBOARD_JWT_JWKS_FILE")
        chosen = [name for name, value in (("WALLBOARD_JWT_SECRET", secret), ("WALLBOARD_JWT_PUBLIC_KEY", public_key_path),
                                           ("WALLBOARD_JWT_JWKS_URL", jwks_url), ("WALLBOARD_JWT_JWKS_FILE", jwks_file))
                  if value is not None]
        if len(chosen) > 1:
            raise ConfigError(f"{' and '.join(chosen)} are all set: set exactly one source of signing keys")
        if jwks_file is not None and not Path(jwks_file).is_file():
            raise ConfigError(f"WALLBOARD_JWT_JWKS_FILE={jwks_file!r} is not a readable file: expected a JWKS JSON file")
        migrate_url = get.url("WALLBOARD_MIGRATE_DATABASE_URL", ("postgres", "postgresql"))
        if migrate_url is not None and get.str("DATABASE_URL") is None:
            raise ConfigError("WALLBOARD_MIGRATE_DATABASE_URL is set but DATABASE_URL is not: set DATABASE_URL to the "
                              "serving login role (or neither, for the embedded PostgreSQL)")
        public_key = algorithm = None
        if public_key_path is not None:
            public_key, algorithm = _read_pem("WALLBOARD_JWT_PUBLIC_KEY", public_key_path, private=False)
        private_key = None
        if private_key_path is not None:
            private_key, _ = _read_pem("WALLBOARD_JWT_PRIVATE_KEY", private_key_path, private=True)
        db_pool_max = get.int("WALLBOARD_DB_POOL_MAX", 10, 1, 500)
        db_tenant_max = get.int("WALLBOARD_DB_TENANT_MAX", min(6, db_pool_max), 1, 500)
        if db_tenant_max > db_pool_max:
            raise ConfigError(f"WALLBOARD_DB_TENANT_MAX={db_tenant_max} is larger than WALLBOARD_DB_POOL_MAX={db_pool_max}: "
                              "expected at most the pool size")
        return cls(
            db_tenant_max=db_tenant_max,
            db_tenant_wait_s=get.int("WALLBOARD_DB_TENANT_WAIT_S", 5, 1, 60),
            redis_tenant_max=get.int("WALLBOARD_REDIS_TENANT_MAX", 16, 1, 10_000),
            rate_window_s=get.int("WALLBOARD_RATE_WINDOW_S", 60, 1, 3600),
            rate_ingest_tenant=get.int("WALLBOARD_RATE_INGEST_TENANT", 6000, 0, 10_000_000),
            rate_ingest_token=get.int("WALLBOARD_RATE_INGEST_TOKEN", 3000, 0, 10_000_000),
            rate_read_tenant=get.int("WALLBOARD_RATE_READ_TENANT", 6000, 0, 10_000_000),
            rate_read_token=get.int("WALLBOARD_RATE_READ_TOKEN", 1200, 0, 10_000_000),
            ws_max_connections=get.int("WALLBOARD_WS_MAX_CONNECTIONS", 20_000, 1, 1_000_000),
            ws_max_per_address=get.int("WALLBOARD_WS_MAX_PER_ADDRESS", 1000, 1, 1_000_000),
            ws_max_streams_per_tenant=get.int("WALLBOARD_WS_MAX_STREAMS_PER_TENANT", 200, 1, 100_000),
            ws_max_subscribes_per_minute=get.int("WALLBOARD_WS_MAX_SUBSCRIBES_PER_MINUTE", 20, 1, 10_000),
            database_url=get.url("DATABASE_URL", ("postgres", "postgresql")),
            redis_url=get.url("REDIS_URL", ("redis", "rediss", "unix", "valkey", "valkeys")),
            jwt_secret=secret,
            jwt_public_key=public_key,
            jwt_private_key=private_key,
            jwt_algorithm=algorithm or "HS256",
            jwt_audience=get.str("WALLBOARD_JWT_AUDIENCE") or DEFAULT_AUDIENCE,
            jwt_issuer=get.str("WALLBOARD_JWT_ISSUER"),
            jwt_leeway_s=get.int("WALLBOARD_JWT_LEEWAY_S", 30, 0, 300),
            allowed_origins=get.origins("WALLBOARD_ALLOWED_ORIGINS"),
            data_dir=Path(get.str("WALLBOARD_DATA_DIR") or ".wallboard"),
            port=get.int("PORT", 8000, 1, 65535),
            key_prefix=get.match("WALLBOARD_KEY_PREFIX", "wb", r"[A-Za-z0-9_.-]{1,32}"),
            max_body_bytes=get.int("WALLBOARD_MAX_BODY_BYTES", 5 * 1024 * 1024, 1024, 1 << 30),
            max_events=get.int("WALLBOARD_MAX_EVENTS", 10_000, 1, 1_000_000),
            ingest_group_max_events=get.int("WALLBOARD_INGEST_GROUP_MAX_EVENTS", 1000, 1, 100_000),
            ingest_group_inflight=get.int("WALLBOARD_INGEST_GROUP_INFLIGHT", 1, 1, 64),
            ingest_apply_ahead=get.int("WALLBOARD_INGEST_APPLY_AHEAD", 4, 0, 64),
            live_queues_max=get.int("WALLBOARD_LIVE_QUEUES_MAX", 1000, 1, 1_000_000),
            live_agents_max=get.int("WALLBOARD_LIVE_AGENTS_MAX", 2000, 1, 1_000_000),
            ws_render_share=get.float("WALLBOARD_WS_RENDER_SHARE", 0.1, 0.01, 1.0),
            db_pool_min=get.int("WALLBOARD_DB_POOL_MIN", 2, 1, 100),
            db_pool_max=db_pool_max,
            redis_pool_max=get.int("WALLBOARD_REDIS_POOL_MAX", 64, 2, 10_000),
            scorecard_refresh_s=get.int("WALLBOARD_SCORECARD_REFRESH_S", 300, 1, 86_400),
            app_role=get.match("WALLBOARD_DB_APP_ROLE", "wallboard_app", r"[a-z_][a-z0-9_]{0,62}"),
            log_level=get.choice("WALLBOARD_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
            log_format=get.choice("WALLBOARD_LOG_FORMAT", "json", ("json", "text")),
            ws_tick_ms=get.int("WALLBOARD_WS_TICK_MS", 250, 10, 10_000),
            ws_refresh_s=get.int("WALLBOARD_WS_REFRESH_S", 5, 1, 60),
            ws_max_connections_per_tenant=get.int("WALLBOARD_MAX_CONNECTIONS_PER_TENANT", 5000, 1, 1_000_000),
            ws_max_messages_per_minute=get.int("WALLBOARD_WS_MAX_MESSAGES_PER_MINUTE", 120, 1, 100_000),
            ws_max_message_bytes=get.int("WALLBOARD_WS_MAX_MESSAGE_BYTES", 64 * 1024, 256, 16 * 1024 * 1024),
            ws_auth_timeout_s=get.int("WALLBOARD_WS_AUTH_TIMEOUT_S", 5, 1, 120),
            ws_send_timeout_s=get.int("WALLBOARD_WS_SEND_TIMEOUT_S", 10, 1, 600),
            ws_token_grace_s=get.int("WALLBOARD_WS_TOKEN_GRACE_S", 30, 0, 3600),
            ws_ping_interval_s=get.int("WALLBOARD_WS_PING_INTERVAL_S", 20, 1, 3600),
            settings_cache_s=get.int("WALLBOARD_SETTINGS_CACHE_S", 300, 1, 86_400),
            live_cache_tenants=get.int("WALLBOARD_LIVE_CACHE_TENANTS", 10_000, 1, 10_000_000),
            ws_direct_writes=get.flag("WALLBOARD_WS_DIRECT_WRITES", True),
            forecast_every_s=get.int("WALLBOARD_FORECAST_EVERY_S", 3600, 60, 7 * 86_400),
            forecast_days=get.int("WALLBOARD_FORECAST_DAYS", 14, 1, 14),
            forecast_target_sl=get.float("WALLBOARD_FORECAST_TARGET_SL", 0.8, 0.05, 0.999),
            alerts_every_s=get.int("WALLBOARD_ALERTS_EVERY_S", 1, 1, 60),
            gc_freeze_every_s=get.int("WALLBOARD_GC_FREEZE_S", 10, 0, 3600),
            jwt_jwks_url=jwks_url,
            jwt_jwks_file=Path(jwks_file) if jwks_file is not None else None,
            jwt_jwks_cache_s=get.int("WALLBOARD_JWT_JWKS_CACHE_S", 300, 1, 86_400),
            jwt_jwks_cooldown_s=get.int("WALLBOARD_JWT_JWKS_COOLDOWN_S", 30, 0, 3600),
            live_sweep_s=get.int("WALLBOARD_LIVE_SWEEP_S", 2, 1, 300),
            live_pending_age_s=get.int("WALLBOARD_LIVE_PENDING_AGE_S", 5, 2, 3600),
            live_check_s=get.int("WALLBOARD_LIVE_CHECK_S", 2, 1, 300),
            live_reconcile_s=get.int("WALLBOARD_LIVE_RECONCILE_S", 60, 0, 86_400),
            live_active_s=get.int("WALLBOARD_LIVE_ACTIVE_S", 3600, 60, 7 * 86_400),
            max_request_bytes=get.int("WALLBOARD_MAX_REQUEST_BYTES", 1024 * 1024, 1024, 1 << 30),
            queue_log_max_lines=get.int("WALLBOARD_QUEUE_LOG_MAX_LINES", 50_000, 1, 10_000_000),
            export_max_per_tenant=get.int("WALLBOARD_EXPORT_MAX_PER_TENANT", 2, 1, 1000),
            export_max_per_process=get.int("WALLBOARD_EXPORT_MAX_PER_PROCESS", 4, 1, 10_000),
            http_send_timeout_s=get.float("WALLBOARD_HTTP_SEND_TIMEOUT_S", 30, 0.1, 3600),
            db_statement_timeout_s=get.float("WALLBOARD_DB_STATEMENT_TIMEOUT_S", 30, 0.1, 86_400),
            db_idle_in_transaction_timeout_s=get.float("WALLBOARD_DB_IDLE_IN_TRANSACTION_TIMEOUT_S", 10, 0.1, 86_400),
            http_limit_concurrency=get.int("WALLBOARD_HTTP_LIMIT_CONCURRENCY", 20_000, 0, 10_000_000),
            http_keepalive_timeout_s=get.float("WALLBOARD_HTTP_KEEPALIVE_TIMEOUT_S", 5, 0.1, 3600),
            http_header_timeout_s=get.float("WALLBOARD_HTTP_HEADER_TIMEOUT_S", 10, 0.1, 3600),
            migrate_database_url=migrate_url,
            history_monthly=get.int("WALLBOARD_HISTORY_MONTHLY", 1, 0, 1) == 1,
            # Reports that deliver themselves and alert webhooks
            smtp_url=get.url("WALLBOARD_SMTP_URL", ("smtp", "smtps")),
            smtp_from=get.match("WALLBOARD_SMTP_FROM", "wallboard@localhost", r"[^@\s<>]{1,64}@[^@\s<>]{1,255}"),
            webhook_allow_private=get.flag("WALLBOARD_WEBHOOK_ALLOW_PRIVATE", False),
            webhook_timeout_s=get.float("WALLBOARD_WEBHOOK_TIMEOUT_S", 10, 0.1, 300),
            webhook_per_tenant=get.int("WALLBOARD_WEBHOOK_PER_TENANT", 4, 1, 100),
            delivery_attempts=get.int("WALLBOARD_DELIVERY_ATTEMPTS", 4, 1, 10),
            delivery_backoff_s=get.float("WALLBOARD_DELIVERY_BACKOFF_S", 2, 0.01, 600),
            schedules_poll_s=get.float("WALLBOARD_SCHEDULES_POLL_S", 30, 0.05, 3600),
            schedules_max_per_tenant=get.int("WALLBOARD_SCHEDULES_MAX_PER_TENANT", 50, 1, 10_000),
            retention_every_s=get.int("WALLBOARD_RETENTION_EVERY_S", 3600, 0, 7 * 86_400),
            retention_batch_rows=get.int("WALLBOARD_RETENTION_BATCH_ROWS", 5000, 1, 1_000_000),
            database_replica_url=get.url("DATABASE_REPLICA_URL", ("postgres", "postgresql")),
            metrics_token=get.str("WALLBOARD_METRICS_TOKEN"),
            metrics_sample_s=get.float("WALLBOARD_METRICS_SAMPLE_S", 2.0, 0.1, 3600),
            worker_id=get.str("WALLBOARD_WORKER_ID"),
        )


class _Reader:
    """Typed access to the environment; each method names the setting when it fails."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def str(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def int(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.str(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a whole number: expected {low}..{high}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}={value} is out of range: expected {low}..{high}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.str(name)
        if raw is None:
            return default
        if raw.lower() in ("on", "true", "1", "yes"):
            return True
        if raw.lower() in ("off", "false", "0", "no"):
            return False
        raise ConfigError(f"{name}={raw!r} is not a switch: expected on or off")

    def float(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.str(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a number: expected {low:g}..{high:g}") from None
        if not low <= value <= high:  # also false for nan
            raise ConfigError(f"{name}={value:g} is out of range: expected {low:g}..{high:g}")
        return value

    def match(self, name: str, default: str, pattern: str) -> str:
        raw = self.str(name)
        if raw is None:
            return default
        if not re.fullmatch(pattern, raw):
            raise ConfigError(f"{name}={raw!r} is malformed: expected to match {pattern}")
        return raw

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self.str(name)
        if raw is None:
            return default
        if raw.upper() in choices or raw.lower() in choices:
            return raw.upper() if raw.upper() in choices else raw.lower()
        raise ConfigError(f"{name}={raw!r} is not one of {', '.join(choices)}")

    def url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        raw = self.str(name)
        if raw is None:
            return None
        try:
            parts = urlsplit(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} is not a URL ({exc}): expected {schemes[0]}://…") from None
        scheme = parts.scheme.split("+")[0]
        if scheme not in schemes or not (parts.netloc or parts.path or parts.query):
            raise ConfigError(
                f"{name}={_redact(raw)!r} is not a valid URL: expected "
                f"{' or '.join(s + '://…' for s in schemes)}"
            )
        return raw

    def origins(self, name: str) -> tuple[str, ...]:
        raw = self.str(name)
        if raw is None:
            return ()
        out = []
        for item in raw.split(","):
            item = item.strip().rstrip("/")
            if not item:
                continue
            parts = urlsplit(item)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise ConfigError(
                    f"{name} has {item!r}: expected a comma list of origins like https://board.example.com"
                )
            out.append(item.lower())
        return tuple(out)


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def _read_pem(name: str, path: str, *, private: bool) -> tuple[str, str]:
    """Read a PEM key file and return (text, algorithm); RSA → RS256, EC P-256 → ES256."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{name}={path!r} cannot be read ({exc.strerror}): expected a readable PEM file") from None
    try:
        key = load_pem_private_key(text.encode(), password=None) if private else load_pem_public_key(text.encode())
    except (ValueError, TypeError) as exc:
        kind = "private" if private else "public"
        raise ConfigError(f"{name}={path!r} is not a PEM {kind} key ({exc})") from None
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        if key.key_size < 2048:
            raise ConfigError(f"{name}={path!r} is a {key.key_size}-bit RSA key: expected at least 2048 bits")
        return text, "RS256"
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)) and key.curve.name == "secp256r1":
        return text, "ES256"
    raise ConfigError(f"{name}={path!r} holds an unsupported key type: expected RSA (RS256) or EC P-256 (ES256)")
