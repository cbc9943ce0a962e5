"""HTTP connections that cannot be held open for free: a header-read timeout and a send timeout.

uvicorn (0.54) arms its keep-alive timer only after a response, so a client that connects and
sends nothing, or half a request header, keeps its socket and its place in ``limit_concurrency``
for as long as it likes; and a response written to a client that stopped reading waits on the
socket forever. :func:`protocol_class` returns uvicorn's httptools protocol with two timers:

- the **header timer** runs from the connection's start, and again from the first byte of each
  following request, until the request's header is complete; when it fires the socket is closed;
- the **send timer** runs while the socket's write buffer is over its high-water mark (the client
  is not reading); when nothing drained for ``send_timeout_s`` the socket is aborted, which ends
  the ASGI response (Starlette sees the disconnect and stops the body's iterator).

It also sets ``TCP_NODELAY`` on every connection, which asyncio leaves off on a socket handed in
as ``proto`` 0 (the tests' listening sockets, an inherited file descriptor), and sends a response's
header and the first piece of its body in **one write** (:class:`_OneWrite`): uvicorn writes them
apart, which costs a send system call and a wake-up of the client each. For a one-event ingest
request that was a fifth of the server's system calls.

Trade-off: a client on a link slower than about 64 KiB per ``send_timeout_s`` is cut off too; the
timers are per connection, not per byte. WebSockets are not affected: an upgraded connection
moves to uvicorn's WebSocket protocol, which has its own limits (``server/api/ws.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def protocol_class(header_timeout_s: float, send_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the two timeouts above (pass it as ``uvicorn.Config(http=…)``)."""

    class TimedHttpToolsProtocol(_Timed):
        header_timeout = header_timeout_s
        send_timeout = send_timeout_s

    return TimedHttpToolsProtocol


class _Timed(HttpToolsProtocol):
    header_timeout: float
    send_timeout: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio sets it only on sockets created as IPPROTO_TCP, not on those of a socket handed in
            # (proto 0): without it a response written in two pieces waits ~40 ms for a delayed ACK.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm_header_timer()  # the first byte of a next request on a kept-alive connection
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle  # the request's cycle, made by uvicorn just now (none for a WebSocket upgrade)
        if cycle is not None and cycle is not previous:
            cycle.transport = _OneWrite(self.transport, self.loop)  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.send_timeout, self._send_timed_out)

    def resume_writing(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        super().resume_writing()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _send_timed_out(self) -> None:
        self._send_timer = None
        self.transport.abort()  # close() would wait for the client to read what is buffered


class _OneWrite:
    """The transport as one response cycle sees it: the first write (the header) is held until the next
    (the body's first piece) and both go out in one ``writelines``; then writes pass straight through.

    A header with no body after it in the same step (a HEAD answer, ``100 Continue``, a streamed body
    whose first piece is awaited) goes out alone from a ``call_soon``; ``close`` sends what is held first.
    Everything else is the transport's own.
    """

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = b""  # b"": nothing written yet; bytes: held; None: passing through

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._transport.write(data)
        elif held:
            self._held = None
            self._transport.writelines((held, data))
        elif data:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send what is held, if anything; from then on every write passes straight through."""
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
