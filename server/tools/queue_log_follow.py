"""Follow a queue_log file and post its events to a wallboard server.

:class:`QueueLogFollower` reads complete lines from a remembered byte offset and yields
them as :class:`Batch` es; the offset is advanced and persisted only when the caller
:meth:`~QueueLogFollower.commit` s a batch, so a batch the server never acknowledged is
read again after a restart (the server drops the resulting duplicates by ``event_id``).
With ``follow=True`` it behaves like ``tail -F``: it polls, drains a rotated file, then
continues from the start of the new one. Files are read with plain blocking calls between
polls; a local file read of one chunk is short enough not to matter to the event loop.

:func:`ingest_file` ties the follower to ``POST /api/events``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any, NamedTuple

import httpx

from server.core.errors import WallboardError
from server.ingest.queue_log import Event, QueueLogError, parse_line
from server.tools.poster import post_until_answered, response_data

__all__ = ["Batch", "IngestError", "QueueLogFollower", "ingest_file"]



class Batch(NamedTuple):
    """Complete lines read in one go; unpacks as ``events, errors, offset, *rest``."""

    events: list[Event]
    errors: list[QueueLogError]
    offset: int  # byte offset just past the batch's last line in the file with ``inode``
    inode: int
    next_lineno: int  # line number of the first line after this batch
    lines: int
    event_linenos: list[int]  # the line each event came from, parallel to ``events``


class QueueLogFollower:
    """Reads a queue_log file in batches of complete lines, resuming at the committed offset.

    State (``inode``, ``offset``, ``lineno``) is a small JSON file, by default
    ``<path>.offset.json``; it is rewritten atomically on each :meth:`commit`. On start the
    offset is used only when the file still has the same inode and is at least that long,
    otherwise reading starts at 0. One state file belongs to one destination: feeding the
    same log to two tenants needs two ``state_path`` s.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        state_path: str | os.PathLike[str] | None = None,
        follow: bool = False,
        batch_lines: int = 500,
        poll_interval: float = 0.5,
        chunk_size: int = 1 << 16,
    ) -> None:
        if batch_lines < 1:
            raise ValueError(f"batch_lines must be at least 1, got {batch_lines}")
        self.path = Path(path)
        self.state_path = Path(state_path) if state_path else Path(f"{self.path}.offset.json")
        self.follow = follow
        self.batch_lines = batch_lines
        self.poll_interval = poll_interval
        self.chunk_size = chunk_size
        self.committed: tuple[int, int, int] | None = self._load_state()  # inode, offset, lineno
        self._file: IO[bytes] | None = None
        self._inode = 0
        self._offset = 0  # end of the last complete line handed out
        self._lineno = 1
        self._lines: deque[bytes] = deque()  # complete lines read but not yet handed out
        self._partial = b""
        self._carried: list[QueueLogError] = []
        self._uncommitted: deque[tuple[int, int, int]] = deque(maxlen=4096)

    def __aiter__(self) -> AsyncIterator[Batch]:
        return self.batches()

    async def batches(self) -> AsyncIterator[Batch]:
        """Yield batches until EOF, or forever with ``follow=True``.

        Without ``follow`` a missing file raises ``FileNotFoundError`` and a last line
        lacking its newline is left unread (see :attr:`unread_bytes`).
        """
        while self._file is None:
            try:
                self._open_resume()
            except FileNotFoundError:
                if not self.follow:
                    raise
                await asyncio.sleep(self.poll_interval)
        while True:
            batch = self._next_batch()
            if batch is not None:
                yield batch
            elif not self.follow:
                return
            elif not self._switch_if_rotated():
                await asyncio.sleep(self.poll_interval)

    def commit(self, position: Batch | int) -> None:
        """Record that a batch (or the batch ending at ``position``) was accepted; persist it."""
        if isinstance(position, Batch):
            mark = (position.inode, position.offset, position.next_lineno)
        else:
            found = [m for m in self._uncommitted if m[1] == position]
            if not found:
                raise ValueError(
                    f"offset {position} does not end a batch this follower yielded; "
                    "pass the Batch itself or its offset"
                )
            mark = found[0]
        if mark in self._uncommitted:
            while self._uncommitted.popleft() != mark:
                pass
        self.committed = mark
        self._save_state(mark)

    @property
    def offset(self) -> int:
        """Read position: the end of the last complete line handed out in a batch."""
        return self._offset

    @property
    def unread_bytes(self) -> int:
        """Bytes of an unterminated last line seen but not consumed."""
        return len(self._partial)

    def close(self) -> None:
        """Close the file; the committed offset stays in the state file."""
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- reading -------------------------------------------------------------------------

    def _open_resume(self) -> None:
        fh = open(self.path, "rb")  # noqa: SIM115 - owned by self, closed in close()
        st = os.fstat(fh.fileno())
        offset, lineno = 0, 1
        if self.committed and self.committed[0] == st.st_ino and self.committed[1] <= st.st_size:
            _, offset, lineno = self.committed
        self._attach(fh, st.st_ino, offset, lineno)

    def _attach(self, fh: IO[bytes], inode: int, offset: int, lineno: int) -> None:
        if fh is not self._file:
            self.close()
        fh.seek(offset)
        self._file, self._inode, self._offset, self._lineno = fh, inode, offset, lineno
        self._lines.clear()
        self._partial = b""

    def _fill(self) -> bool:
        """Read one chunk into complete lines plus a partial tail; False at EOF."""
        if self._file is None:
            return False
        chunk = self._file.read(self.chunk_size)
        if not chunk:
            return False
        parts = (self._partial + chunk).split(b"\n")
        self._partial = parts.pop()
        self._lines.extend(parts)
        return True

    def _next_batch(self) -> Batch | None:
        while len(self._lines) < self.batch_lines and self._fill():
            pass
        if not self._lines:
            return None
        events: list[Event] = []
        linenos: list[int] = []
        errors, self._carried = self._carried, []
        count = min(len(self._lines), self.batch_lines)
        for _ in range(count):
            raw = self._lines.popleft()
            self._offset += len(raw) + 1
            try:
                found = parse_line(raw.decode("utf-8", "replace"), self._lineno)
            except QueueLogError as exc:
                errors.append(exc)
            else:
                events.extend(found)
                linenos.extend([self._lineno] * len(found))
            self._lineno += 1
        self._uncommitted.append((self._inode, self._offset, self._lineno))
        return Batch(events, errors, self._offset, self._inode, self._lineno, count, linenos)

    def _switch_if_rotated(self) -> bool:
        """At EOF: reopen on rotation or truncation. True when there is something new to read."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # renamed away, the new file not there yet
        if st.st_ino != self._inode:
            if self._fill():  # the writer may have added to the old file before letting go
                return True
            try:
                fh = open(self.path, "rb")  # noqa: SIM115
            except FileNotFoundError:
                return False
            if self._partial:
                self._carried.append(
                    QueueLogError(self._lineno, "rotated file ended without a newline; line dropped")
                )
            self._attach(fh, os.fstat(fh.fileno()).st_ino, 0, 1)
            return True
        if st.st_size < self._offset + len(self._partial):
            assert self._file is not None
            self._attach(self._file, self._inode, 0, 1)  # truncated in place (copytruncate)
            return True
        return False

    # -- state ---------------------------------------------------------------------------

    def _load_state(self) -> tuple[int, int, int] | None:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            return int(data["inode"]), int(data["offset"]), int(data.get("lineno", 1))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise WallboardError(
                f"queue_log state file {self.state_path} is unreadable ({exc}); "
                "delete it to start from the beginning of the file"
            ) from exc

    def _save_state(self, mark: tuple[int, int, int]) -> None:
        inode, offset, lineno = mark
        doc = {"path": str(self.path.resolve()), "inode": inode, "offset": offset, "lineno": lineno}
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)


# -- posting ---------------------------------------------------------------------------------


class IngestError(WallboardError):
    """The server refused a batch in a way retrying cannot fix (bad token, batch too big…)."""


async def ingest_file(
    path: str | os.PathLike[str],
    url: str,
    token: str,
    *,
    follow: bool = False,
    state_path: str | os.PathLike[str] | None = None,
    batch_size: int = 500,
    progress: bool = True,
    poll_interval: float = 0.5,
    max_backoff_s: float = 30.0,
    timeout_s: float = 30.0,
    transport: httpx.AsyncBaseTransport | None = None,
    stderr: IO[str] | None = None,
) -> dict[str, int]:
    """Post a queue_log file's events to ``{url}/api/events``; return a summary.

    Connection errors, timeouts, 408, 429 and 5xx are retried forever with capped
    exponential back-off and full jitter (``Retry-After`` wins when sent); the offset is
    committed only once the server answered the batch (2xx, or a 422 listing every event
    as rejected, which no retry could change). 401/403/413 and other 4xx raise
    :class:`IngestError`. Bad lines go to stderr as ``path:lineno: reason``. On a finite
    file (``follow=False``) a ``\\r`` progress line is drawn on stderr when ``progress``.

    Summary keys: ``lines``, ``events``, ``accepted``, ``duplicates``, ``rejected``, ``errors``.
    """
    out = stderr if stderr is not None else sys.stderr
    follower = QueueLogFollower(
        path, state_path=state_path, follow=follow, batch_lines=batch_size, poll_interval=poll_interval
    )
    summary = dict.fromkeys(("lines", "events", "accepted", "duplicates", "rejected", "errors"), 0)
    bar = _Progress(out, os.path.getsize(path)) if progress and not follow else None
    endpoint = url.rstrip("/") + "/api/events"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def say(message: str) -> None:
        if bar:
            bar.clear()
        print(message, file=out, flush=True)

    async with httpx.AsyncClient(timeout=timeout_s, transport=transport, headers=headers) as client:
        try:
            async for batch in follower:
                summary["lines"] += batch.lines
                summary["events"] += len(batch.events)
                summary["errors"] += len(batch.errors)
                for error in batch.errors:
                    say(f"{path}:{error.lineno}: {error.reason}")
                if batch.events:
                    data = await _post(client, endpoint, batch.events, max_backoff_s, say)
                    summary["accepted"] += int(data.get("accepted", 0))
                    summary["duplicates"] += int(data.get("duplicates", 0))
                    for item in data.get("rejected") or []:
                        summary["rejected"] += 1
                        say(f"{path}:{_rejected_line(batch, item)}: rejected by server: "
                            f"{item.get('error') if isinstance(item, dict) else item}")
                follower.commit(batch)
                if bar:
                    bar.draw(batch.offset, summary["lines"])
        finally:
            follower.close()
            if bar:
                bar.finish(follower.offset, summary["lines"])
    if not follow and follower.unread_bytes:
        say(f"{path}: last line has no newline yet; {follower.unread_bytes} bytes left unread")
    return summary


async def _post(
    client: httpx.AsyncClient,
    endpoint: str,
    events: list[Event],
    max_backoff_s: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    body = json.dumps(events, separators=(",", ":")).encode("utf-8")

    def retrying(attempt: int, problem: str, delay: float) -> None:
        say(f"POST {endpoint} failed ({problem}); retrying in {delay:.1f}s")

    response = await post_until_answered(client, endpoint, content=body, backoff_cap_s=max_backoff_s,
                                         on_retry=retrying)
    status = response.status_code
    data = response_data(response)
    if 200 <= status < 300:
        return data if data is not None else {"accepted": len(events)}
    if status == 422 and data is not None and "rejected" in data:
        return data
    hint = {401: "; check the token", 403: "; the token needs role ingest or admin",
            413: "; use a smaller batch size"}.get(status, "")
    raise IngestError(f"POST {endpoint} answered {status}: {_message(response)}{hint}", details={"status": status})


def _rejected_line(batch: Batch, item: Any) -> int | str:
    index = item.get("index") if isinstance(item, dict) else None
    if isinstance(index, int) and 0 <= index < len(batch.event_linenos):
        return batch.event_linenos[index]
    return "?"


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase


class _Progress:
    """A one-line ``\\r`` progress display: bytes done / total, percent, lines/s."""

    def __init__(self, out: IO[str], total: int) -> None:
        self.out, self.total = out, max(total, 1)
        self.started = self.drawn_at = time.monotonic()
        self.width = 0

    def draw(self, done: int, lines: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.drawn_at < 0.1:
            return
        self.drawn_at = now
        rate = lines / max(now - self.started, 1e-6)
        text = f"{_size(done)} / {_size(self.total)}  {100 * done / self.total:5.1f}%  {rate:,.0f} lines/s"
        self.out.write("\r" + text.ljust(self.width))
        self.out.flush()
        self.width = len(text)

    def clear(self) -> None:
        if self.width:
            self.out.write("\r" + " " * self.width + "\r")
            self.width = 0

    def finish(self, done: int, lines: int) -> None:
        self.draw(done, lines, force=True)
        self.out.write("\n")
        self.out.flush()
        self.width = 0


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GiB"
