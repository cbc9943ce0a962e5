"""E-mail with a file attached, sent through the SMTP server at ``WALLBOARD_SMTP_URL`` (aiosmtplib).

``smtp://user:pass@host:587`` upgrades with STARTTLS when the server offers it;
``smtps://host:465`` speaks TLS from the first byte. A failure comes back as an error text
(never raised), so the caller can retry and record it like a webhook's.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

ADDRESS = re.compile(r"[^@\s<>,;\"']{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")


async def send_attachment(smtp_url: str, sender: str, to: str, subject: str, text: str, filename: str,
                          content: bytes, *, timeout_s: float) -> str | None:
    """Send one message with ``content`` attached as ``filename`` (CSV); None when sent, else the error."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message.set_content(text)
    message.add_attachment(content, maintype="text", subtype="csv", filename=filename)
    parts = urlsplit(smtp_url)
    implicit_tls = parts.scheme == "smtps"
    try:
        await aiosmtplib.send(message, hostname=parts.hostname or "localhost", port=parts.port or (465 if implicit_tls else 25),
                              username=unquote(parts.username) if parts.username else None,
                              password=unquote(parts.password) if parts.password else None,
                              use_tls=implicit_tls, start_tls=False if implicit_tls else None, timeout=timeout_s)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None
