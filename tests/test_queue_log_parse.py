"""Asterisk queue_log translation and the file follower (no server needed)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from server.ingest.queue_log import QueueLogError, normalise_agent, parse_line, parse_lines
from server.tools.queue_log_follow import Batch, QueueLogFollower

T = "1732528800"  # 2024-11-25T10:00:00Z
ISO = "2024-11-25T10:00:00.000Z"


def one(line: str, lineno: int = 1) -> dict[str, Any]:
    events = parse_line(line, lineno)
    assert len(events) == 1, events
    event = dict(events[0])
    assert event.pop("event_id").startswith("ql-")
    return event


@pytest.mark.parametrize(
    "line",
    [
        f"{T}|1700.1|sales|NONE|ENTERQUEUE||5551234",
        f"{T}|1700.1|sales|NONE|ENTERQUEUE|http://x|5551234|1",
    ],
)
def test_enterqueue_short_and_long(line: str) -> None:
    """ENTERQUEUE in both layouts becomes call.queued with call and queue ids."""
    assert one(line) == {"ts": ISO, "type": "call.queued", "call_id": "1700.1", "queue_id": "sales"}


@pytest.mark.parametrize(
    ("line", "agent"),
    [
        (f"{T}|1700.1|sales|SIP/1001|CONNECT|12", "1001"),
        (f"{T}|1700.1|sales|PJSIP/1001|CONNECT|12|1700.2|3", "1001"),
        (f"{T}|1700.1|sales|Local/1001@from-queue/n|CONNECT|12|1700.2|3", "1001"),
        (f"{T}|1700.1|sales|Agent/1001|CONNECT|12", "1001"),
        (f"{T}|1700.1|sales|Alice Smith|CONNECT|12", "Alice Smith"),
    ],
)
def test_connect_normalises_agent(line: str, agent: str) -> None:
    """CONNECT becomes call.answered with the agent stripped of tech prefix and suffixes."""
    assert one(line) == {
        "ts": ISO, "type": "call.answered", "call_id": "1700.1", "queue_id": "sales", "agent_id": agent
    }


def test_normalise_agent_keeps_plain_names() -> None:
    """A member name without a channel technology keeps its '@' and case."""
    assert normalise_agent("alice@example.com") == "alice@example.com"
    assert normalise_agent("sip/1002/n") == "1002"


@pytest.mark.parametrize(
    ("line", "talk"),
    [
        (f"{T}|1700.1|sales|SIP/1001|COMPLETEAGENT|12|240", 240.0),
        (f"{T}|1700.1|sales|SIP/1001|COMPLETECALLER|12|240.5|1", 240.5),
    ],
)
def test_complete_short_and_long(line: str, talk: float) -> None:
    """COMPLETEAGENT/COMPLETECALLER become call.completed with talk_s = calltime, not transferred."""
    assert one(line) == {
        "ts": ISO, "type": "call.completed", "call_id": "1700.1", "queue_id": "sales",
        "agent_id": "1001", "talk_s": talk, "hold_s": 0.0, "wrap_s": 0.0, "transferred": False,
    }


@pytest.mark.parametrize(
    ("line", "talk"),
    [
        (f"{T}|1700.1|sales|SIP/1001|TRANSFER|2000|from-internal|12|90|1", 90.0),
        (f"{T}|1700.1|sales|SIP/1001|TRANSFER|2000|from-internal", 0.0),
        (f"{T}|1700.1|sales|SIP/1001|BLINDTRANSFER|2000|from-internal|12|91|1", 91.0),
        (f"{T}|1700.1|sales|SIP/1001|ATTENDEDTRANSFER|BRIDGE|abc-123|12|92|1", 92.0),
        (f"{T}|1700.1|sales|SIP/1001|ATTENDEDTRANSFER|APP|Playback|12|93|1", 93.0),
        (f"{T}|1700.1|sales|SIP/1001|ATTENDEDTRANSFER|LINK|SIP/2000-01|12|94|1", 94.0),
    ],
)
def test_transfers(line: str, talk: float) -> None:
    """Every transfer form becomes call.completed with transferred true and talk_s = calltime."""
    event = one(line)
    assert event["type"] == "call.completed"
    assert event["transferred"] is True
    assert event["talk_s"] == talk
    assert (event["agent_id"], event["hold_s"], event["wrap_s"]) == ("1001", 0.0, 0.0)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (f"{T}|1700.1|sales|NONE|ABANDON|1|1|33", "abandon"),
        (f"{T}|1700.1|sales|NONE|EXITWITHTIMEOUT|1|1|300", "timeout"),
        (f"{T}|1700.1|sales|NONE|EXITWITHTIMEOUT|1", "timeout"),
        (f"{T}|1700.1|sales|NONE|EXITEMPTY|1|1|4", "empty"),
        (f"{T}|1700.1|sales|NONE|EXITWITHKEY|5|1|1|20", "key"),
        (f"{T}|1700.1|sales|NONE|EXITWITHKEY|5|1", "key"),
    ],
)
def test_abandons(line: str, reason: str) -> None:
    """Every way of leaving the queue unanswered becomes call.abandoned with its reason."""
    assert one(line) == {
        "ts": ISO, "type": "call.abandoned", "call_id": "1700.1", "queue_id": "sales", "reason": reason
    }


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"{T}|NONE|sales|SIP/1001|ADDMEMBER|", {"state": "available", "queues": ["sales"]}),
        (f"{T}|NONE|NONE|Agent/1001|AGENTLOGIN|SIP/1001-0001", {"state": "available"}),
        (f"{T}|NONE|NONE|Agent/1001|AGENTLOGOFF|SIP/1001-0001|3600", {"state": "logged_out"}),
        (f"{T}|NONE|sales|SIP/1001|REMOVEMEMBER|", {"state": "logged_out"}),
        (f"{T}|NONE|sales|SIP/1001|PAUSE|lunch", {"state": "break", "reason": "lunch"}),
        (f"{T}|NONE|sales|SIP/1001|PAUSE", {"state": "break", "reason": "paused"}),
        (f"{T}|NONE|NONE|SIP/1001|PAUSEALL|", {"state": "break", "reason": "paused"}),
        (f"{T}|NONE|sales|SIP/1001|UNPAUSE|lunch", {"state": "available"}),
        (f"{T}|NONE|NONE|SIP/1001|UNPAUSEALL", {"state": "available"}),
    ],
)
def test_agent_states(line: str, expected: dict[str, Any]) -> None:
    """Login, membership and pause verbs become agent.state with the right state and reason."""
    assert one(line) == {"ts": ISO, "type": "agent.state", "agent_id": "1001", **expected}


@pytest.mark.parametrize(
    "line",
    [
        f"{T}|NONE|NONE|NONE|QUEUESTART|",
        f"{T}|NONE|NONE|NONE|CONFIGRELOAD|",
        f"{T}|1700.1|sales|NONE|DID|5550000",
        f"{T}|1700.1|sales|NONE|INFO|x|y",
        f"{T}|1700.1|sales|SIP/1001|SYSCOMPAT|",
        "",
        "\r\n",
    ],
)
def test_ignored_lines(line: str) -> None:
    """Verbs without wallboard meaning, and blank lines, give no event."""
    assert parse_line(line, 1) == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"{T}|1700.1|sales|SIP/1001|RINGNOANSWER|15000",
         {"type": "call.missed", "call_id": "1700.1", "queue_id": "sales", "agent_id": "1001", "ring_s": 15.0}),
        (f"{T}|1700.1|sales|SIP/1001|RINGNOANSWER|",
         {"type": "call.missed", "call_id": "1700.1", "queue_id": "sales", "agent_id": "1001"}),
        (f"{T}|1700.1|sales|SIP/1001|AGENTCALLED|SIP/1001-0001",
         {"type": "call.offered", "call_id": "1700.1", "queue_id": "sales", "agent_id": "1001"}),
        (f"{T}|1700.1|sales|SIP/1001|HOLD|",
         {"type": "call.hold", "call_id": "1700.1", "queue_id": "sales", "agent_id": "1001"}),
        (f"{T}|1700.1|NONE|SIP/1001|CALLEROFFHOLD|12",
         {"type": "call.unhold", "call_id": "1700.1", "agent_id": "1001"}),
    ],
)
def test_ring_and_hold_verbs(line: str, expected: dict[str, Any]) -> None:
    """AGENTCALLED rings an agent, RINGNOANSWER is a missed call with its ring time, HOLD/UNHOLD hold the call."""
    assert one(line) == {"ts": ISO, **expected}


def test_ring_time_that_is_not_a_number_is_refused() -> None:
    """RINGNOANSWER with a ring time that is no number names the field."""
    with pytest.raises(QueueLogError, match="ringtime"):
        parse_line(f"{T}|1700.1|sales|SIP/1001|RINGNOANSWER|soon", 3)


def test_fractional_epoch_and_crlf() -> None:
    """A fractional epoch keeps milliseconds; CRLF and trailing empty fields change nothing."""
    plain = parse_line("1732528800.123456|1700.1|sales|NONE|ABANDON|1|1|33", 1)
    crlf = parse_line("1732528800.123456|1700.1|sales|NONE|ABANDON|1|1|33|||\r\n", 7)
    assert plain[0]["ts"] == "2024-11-25T10:00:00.123Z"
    assert plain == crlf


def test_event_ids_deterministic() -> None:
    """The event_id depends on the line's content only, not on its line number."""
    line = f"{T}|1700.1|sales|NONE|ENTERQUEUE||5551234\n"
    first, again = parse_line(line, 1)[0], parse_line(line, 99)[0]
    other = parse_line(f"{T}|1700.2|sales|NONE|ENTERQUEUE||5551234", 1)[0]
    assert first["event_id"] == again["event_id"] != other["event_id"]
    assert len(first["event_id"]) <= 128


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (f"{T}|1700.1|sales|SIP/1001|FROBNICATE|1", "unknown event 'FROBNICATE'"),
        ("yesterday|1700.1|sales|NONE|ENTERQUEUE||1", "epoch"),
        ("-5|1700.1|sales|NONE|ENTERQUEUE||1", "epoch"),
        (f"{T}|1700.1|sales", "at least 5"),
        (f"{T}|1700.1|sales|SIP/1001|COMPLETEAGENT|12|long", "calltime"),
        (f"{T}|1700.1|sales|SIP/1001|COMPLETEAGENT|12", "calltime"),
        (f"{T}|1700.1|sales|NONE|CONNECT|12", "agent"),
        (f"{T}|NONE|sales|NONE|ENTERQUEUE||1", "call id"),
    ],
)
def test_bad_lines_raise_with_line_number(line: str, fragment: str) -> None:
    """Unknown verbs, bad epochs, short lines and malformed fields raise QueueLogError with the line number."""
    with pytest.raises(QueueLogError) as info:
        parse_line(line, 42)
    assert info.value.lineno == 42
    assert fragment in info.value.reason
    assert str(info.value).startswith("line 42: ")
    assert isinstance(info.value, ValueError)


def test_parse_lines_keeps_going() -> None:
    """parse_lines translates the good lines and reports each bad line by number."""
    lines = [
        f"{T}|1700.1|sales|NONE|ENTERQUEUE||1\n",
        "garbage\n",
        f"{T}|NONE|NONE|NONE|QUEUESTART|\n",
        f"{T}|1700.1|sales|SIP/1001|WHAT|\n",
        f"{T}|1700.1|sales|SIP/1001|CONNECT|3\n",
    ]
    events, errors = parse_lines(lines, start_lineno=10)
    assert [e["type"] for e in events] == ["call.queued", "call.answered"]
    assert [e.lineno for e in errors] == [11, 13]


# -- follower -----------------------------------------------------------------------------

Q1 = f"{T}|1.1|sales|NONE|ENTERQUEUE||1\n"
Q2 = f"{T}|1.2|sales|NONE|ENTERQUEUE||2\n"
Q3 = f"{T}|1.3|sales|NONE|ENTERQUEUE||3\n"


async def drain(follower: QueueLogFollower, *, commit: bool = True) -> list[Batch]:
    batches = []
    async for batch in follower:
        batches.append(batch)
        if commit:
            follower.commit(batch.offset)
    return batches


def call_ids(batches: list[Batch]) -> list[str]:
    return [e["call_id"] for b in batches for e in b.events]


@pytest.mark.asyncio
async def test_follower_partial_line_waits(tmp_path: Path) -> None:
    """A last line without its newline is not consumed until it is completed."""
    log = tmp_path / "queue_log"
    log.write_text(Q1 + Q2[:10])
    follower = QueueLogFollower(log)
    first = await drain(follower)
    assert call_ids(first) == ["1.1"]
    assert follower.offset == len(Q1) and follower.unread_bytes == 10
    with log.open("a") as fh:
        fh.write(Q2[10:] + "bad line\n")
    second = await drain(follower)
    assert call_ids(second) == ["1.2"]
    assert [e.lineno for b in second for e in b.errors] == [3]
    assert follower.offset == log.stat().st_size
    follower.close()


@pytest.mark.asyncio
async def test_follower_batches_are_bounded(tmp_path: Path) -> None:
    """Batches hold at most batch_lines lines and count lines across batches."""
    log = tmp_path / "queue_log"
    log.write_text(Q1 + Q2 + Q3)
    follower = QueueLogFollower(log, batch_lines=2)
    batches = await drain(follower)
    assert [b.lines for b in batches] == [2, 1]
    assert batches[1].event_linenos == [3]
    follower.close()


@pytest.mark.asyncio
async def test_offset_persists_across_restart(tmp_path: Path) -> None:
    """A new follower resumes after the last committed batch, with line numbers intact."""
    log = tmp_path / "queue_log"
    state = tmp_path / "state.json"
    log.write_text(Q1 + Q2)
    first = QueueLogFollower(log, state_path=state)
    assert call_ids(await drain(first)) == ["1.1", "1.2"]
    first.close()
    assert json.loads(state.read_text())["offset"] == len(Q1 + Q2)
    with log.open("a") as fh:
        fh.write(Q3 + "oops\n")
    second = QueueLogFollower(log, state_path=state)
    batches = await drain(second)
    assert call_ids(batches) == ["1.3"]
    assert batches[0].errors[0].lineno == 4
    second.close()


@pytest.mark.asyncio
async def test_offset_not_advanced_without_commit(tmp_path: Path) -> None:
    """Batches read but never committed are read again by the next follower."""
    log = tmp_path / "queue_log"
    log.write_text(Q1 + Q2)
    first = QueueLogFollower(log, batch_lines=1)
    batches = await drain(first, commit=False)
    first.commit(batches[0])
    first.close()
    second = QueueLogFollower(log)
    assert call_ids(await drain(second)) == ["1.2"]
    second.close()
    with pytest.raises(ValueError):
        second.commit(12345)


@pytest.mark.asyncio
async def test_state_of_other_file_is_ignored(tmp_path: Path) -> None:
    """A stored offset for a different inode (the file was replaced) restarts at 0."""
    log = tmp_path / "queue_log"
    log.write_text(Q1 + Q2)
    follower = QueueLogFollower(log)
    await drain(follower)
    follower.close()
    log.unlink()
    (tmp_path / "placeholder").write_text("keeps the old inode number from being reused")
    log.write_text(Q3)
    again = QueueLogFollower(log)
    assert call_ids(await drain(again)) == ["1.3"]
    again.close()


async def follow_until(follower: QueueLogFollower, want: int, steps: list[Callable[[], None]]) -> list[str]:
    """Run a following reader, applying one file change each time it catches up."""
    seen: list[str] = []
    pending = list(steps)

    async def reader() -> None:
        async for batch in follower:
            seen.extend(e["call_id"] for e in batch.events)
            follower.commit(batch)
            if len(seen) >= want:
                return

    task = asyncio.create_task(reader())
    while pending and not task.done():
        await asyncio.sleep(0.05)
        pending.pop(0)()
    await asyncio.wait_for(task, timeout=5)
    follower.close()
    return seen


@pytest.mark.asyncio
async def test_follow_rotation(tmp_path: Path) -> None:
    """With follow=True a renamed-away file is drained and the new file is read from its start."""
    log = tmp_path / "queue_log"
    log.write_text(Q1)
    writer = open(log, "a")  # the writer keeps the old file open across the rename

    def rotate() -> None:
        os.rename(log, tmp_path / "queue_log.1")
        writer.write(Q2)  # late write to the old file, after the rename
        writer.flush()

    def new_file() -> None:
        writer.close()
        log.write_text(Q3)

    follower = QueueLogFollower(log, follow=True, poll_interval=0.01)
    seen = await follow_until(follower, 3, [rotate, new_file])
    assert seen == ["1.1", "1.2", "1.3"]
    assert follower.committed is not None
    assert follower.committed[0] == log.stat().st_ino


@pytest.mark.asyncio
async def test_follow_truncation(tmp_path: Path) -> None:
    """With follow=True a file truncated in place is read again from its start."""
    log = tmp_path / "queue_log"
    log.write_text(Q1 + Q2)

    def truncate() -> None:
        log.write_text(Q3)

    follower = QueueLogFollower(log, follow=True, poll_interval=0.01)
    assert await follow_until(follower, 3, [truncate]) == ["1.1", "1.2", "1.3"]


@pytest.mark.asyncio
async def test_follow_waits_for_missing_file(tmp_path: Path) -> None:
    """With follow=True a file that does not exist yet is waited for."""
    log = tmp_path / "queue_log"

    def create() -> None:
        log.write_text(Q1)

    follower = QueueLogFollower(log, follow=True, poll_interval=0.01)
    assert await follow_until(follower, 1, [create]) == ["1.1"]
