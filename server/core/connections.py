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

It also sends each response's header block and body in one ``send`` (uvicorn writes them apart; see
:class:`_Joined`), and sets ``TCP_NODELAY`` on every connection, which asyncio leaves off on a socket handed in
as ``proto`` 0 (the tests' listening sockets, an inherited file descriptor).

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

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()
        if self.cycle is not None and not isinstance(self.cycle.transport, _Joined):
            self.cycle.transport = _Joined(self.transport, self.loop)  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm_header_timer()  # the first byte of a next request on a kept-alive connection
        super().data_received(data)

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


class _Joined:
    """One response's view of the connection's transport: its first write (the status line and
    headers) is held until the next one (the body), and both go out in one ``send``.

    uvicorn writes the header block and the body of a response separately: two system calls and
    two TCP segments for every answer, which for a small one (a 429, a 304, a live read) is a good
    part of what the whole request costs. A header block with no body written in the same step (a
    streamed answer) goes out on the loop's next iteration.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = b""  # b"": nothing written yet; None: no longer holding

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._transport.write(data)
        elif held:
            self._held = None
            self._transport.write(held + data)
        else:
            self._held = data
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
