"""A TCP proxy the tests can cut and restore: a real network outage between the server and a backend."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit, urlunsplit


class Proxy:
    """Forwards 127.0.0.1:<port> to a target; ``cut()`` drops every connection and refuses new ones."""

    def __init__(self, target_host: str, target_port: int = 0) -> None:
        """Target a TCP host and port, or a Unix socket path (``target_port`` 0)."""
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop listening (connections are refused) and reset every open connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def restore(self) -> None:
        await self.start()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.target[1]:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            else:
                up_reader, up_writer = await asyncio.open_unix_connection(self.target[0])
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(dst)
            with contextlib.suppress(Exception):
                dst.transport.abort()


def postgres_proxy(dsn: str) -> tuple[Proxy, Callable[[], str]]:
    """A proxy in front of the PostgreSQL of ``dsn`` (TCP or Unix socket) and a function giving the proxied URL."""
    parts = urlsplit(dsn)
    socket_dir = parse_qs(parts.query).get("host", [""])[0]
    if socket_dir.startswith("/"):
        proxy = Proxy(f"{socket_dir}/.s.PGSQL.{parts.port or 5432}")
    else:
        proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    user = parts.username or "postgres"
    return proxy, lambda: urlunsplit(("postgresql", f"{user}@127.0.0.1:{proxy.port}", parts.path, "", ""))
