"""Asterisk queue_log end to end: the CLI and POST /api/ingest/asterisk/queue-log against a real server."""

from __future__ import annotations

import asyncio
import os
import random
import re
import secrets
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT, TEST_SECRET, RunningServer
from .test_live_exact import day_started_hours_ago, put_settings

QUEUES = ("sales", "support", "billing")
AGENTS = tuple(str(1001 + i) for i in range(24))
MALFORMED_AT = (7, 5000, 9990)  # 1-based line numbers of the broken lines
MALFORMED = (
    "this is not a queue_log line",
    "{ts}|1700000000.1|sales|SIP/1001|FROBNICATE|1",
    "yesterday|1700000000.2|sales|NONE|ENTERQUEUE||5551234",
)
HANDLED_VERBS = ("COMPLETEAGENT", "COMPLETECALLER", "TRANSFER", "BLINDTRANSFER", "ATTENDEDTRANSFER")
ABANDON_VERBS = ("ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY")
STATE_VERBS = ("AGENTLOGIN", "AGENTLOGOFF", "ADDMEMBER", "REMOVEMEMBER", "PAUSE", "UNPAUSE", "PAUSEALL", "UNPAUSEALL")
ALL_VERBS = ("ENTERQUEUE", "CONNECT", "RINGNOANSWER", *HANDLED_VERBS, *ABANDON_VERBS, *STATE_VERBS)


@pytest.fixture(scope="module")
def ql_server(server: RunningServer) -> RunningServer:
    """The run's shared server (the queue_log route is part of the app)."""
    return server


# -- the generated log -------------------------------------------------------------------------


def generate_log(now: float, *, min_lines: int = 10_050, seed: int = 5, malformed: bool = True) -> list[str]:
    """A chronological queue_log over the ~3 hours before ``now``: every verb, short and long forms.

    Calls get unique Asterisk uniqueids; each agent's state changes fall on distinct seconds, so
    "the last one" is unambiguous. The malformed lines sit at :data:`MALFORMED_AT`.
    """
    rng = random.Random(seed)
    start, end = int(now) - 3 * 3600, int(now) - 10
    rows: list[tuple[int, int, str]] = []  # (epoch, sequence, line); sequence keeps a call's order
    seq = 0

    def add(ts: int, line: str) -> None:
        nonlocal seq
        if ts <= end:
            rows.append((ts, seq, line))
            seq += 1

    def channel(agent: str) -> str:
        return rng.choice((f"SIP/{agent}", f"PJSIP/{agent}", f"Local/{agent}@from-queue/n", f"Agent/{agent}"))

    for n, agent in enumerate(AGENTS):
        ts = start - 120 + n
        queue = QUEUES[n % len(QUEUES)]
        if n % 2:
            add(ts, f"{ts}|NONE|NONE|Agent/{agent}|AGENTLOGIN|SIP/{agent}-{n:08x}")
        else:
            add(ts, f"{ts}|NONE|{queue}|SIP/{agent}|ADDMEMBER|" + ("|" if n % 4 else ""))
        logged_in, paused = True, False
        ts += rng.randint(300, 900)
        while ts < end:
            if not logged_in:
                verb = rng.choice(("AGENTLOGIN", "ADDMEMBER"))
                add(ts, f"{ts}|NONE|NONE|Agent/{agent}|AGENTLOGIN|SIP/{agent}-{ts:08x}" if verb == "AGENTLOGIN"
                    else f"{ts}|NONE|{queue}|PJSIP/{agent}|ADDMEMBER|")
                logged_in, paused = True, False
            elif paused:
                if rng.random() < 0.5:
                    add(ts, f"{ts}|NONE|{queue}|SIP/{agent}|UNPAUSE|" + rng.choice(("", "lunch")))
                else:
                    add(ts, f"{ts}|NONE|NONE|SIP/{agent}|UNPAUSEALL" + rng.choice(("", "|")))
                paused = False
            elif rng.random() < 0.15:
                if rng.random() < 0.5:
                    add(ts, f"{ts}|NONE|NONE|Agent/{agent}|AGENTLOGOFF|SIP/{agent}-0001"
                        + rng.choice(("", f"|{rng.randint(60, 9000)}")))
                else:
                    add(ts, f"{ts}|NONE|{queue}|SIP/{agent}|REMOVEMEMBER|")
                logged_in = False
            else:
                reason = rng.choice(("lunch", "training", "coaching", ""))
                if rng.random() < 0.5:
                    add(ts, f"{ts}|NONE|{queue}|SIP/{agent}|PAUSE|{reason}" + rng.choice(("", "|")))
                else:
                    add(ts, f"{ts}|NONE|NONE|SIP/{agent}|PAUSEALL|{reason}")
                paused = True
            ts += rng.randint(240, 1500)

    enders = HANDLED_VERBS + ABANDON_VERBS
    call = 0
    while len(rows) + (len(MALFORMED) if malformed else 0) < min_lines:
        t0 = rng.randint(start, end)
        call += 1
        callid = f"{t0}.{call}"
        queue = rng.choice(QUEUES)
        caller = f"555{rng.randint(0, 9999):04d}"
        if rng.random() < 0.5:
            add(t0, f"{t0}|{callid}|{queue}|NONE|ENTERQUEUE||{caller}")
        else:
            add(t0, f"{t0}|{callid}|{queue}|NONE|ENTERQUEUE|http://crm/{call}|{caller}|{rng.randint(1, 9)}")
        # Every ender gets its turn so that no verb is left out, whatever the seed.
        verb = enders[call % len(enders)] if call <= 10 * len(enders) else rng.choice(enders)
        if verb in ABANDON_VERBS and rng.random() < 0.5:
            verb = rng.choice(HANDLED_VERBS)  # answered calls are the majority
        wait = rng.randint(1, 120)
        t1 = t0 + wait
        if verb in ABANDON_VERBS:
            long = rng.random() < 0.5
            pos, orig = rng.randint(1, 5), rng.randint(1, 5)
            data = {
                "ABANDON": f"{pos}|{orig}|{wait}",
                "EXITWITHTIMEOUT": f"{pos}|{orig}|{wait}" if long else f"{pos}",
                "EXITEMPTY": f"{pos}|{orig}|{wait}",
                "EXITWITHKEY": f"{rng.randint(0, 9)}|{pos}|{orig}|{wait}" if long else f"{rng.randint(0, 9)}|{pos}",
            }[verb]
            add(t1, f"{t1}|{callid}|{queue}|NONE|{verb}|{data}")
            continue
        agent = rng.choice(AGENTS)
        if rng.random() < 0.3:
            ring = rng.randint(0, wait - 1) if wait > 1 else 0
            add(t0 + ring, f"{t0 + ring}|{callid}|{queue}|{channel(rng.choice(AGENTS))}|RINGNOANSWER|15000")
        chan = channel(agent)
        if rng.random() < 0.5:
            add(t1, f"{t1}|{callid}|{queue}|{chan}|CONNECT|{wait}")
        else:
            add(t1, f"{t1}|{callid}|{queue}|{chan}|CONNECT|{wait}|{t1}.{call + 900000}|{rng.randint(1, 20)}")
        talk = rng.randint(20, 900)
        t2 = t1 + talk
        long = rng.random() < 0.5
        data = {
            "COMPLETEAGENT": f"{wait}|{talk}|{rng.randint(1, 5)}" if long else f"{wait}|{talk}",
            "COMPLETECALLER": f"{wait}|{talk}|{rng.randint(1, 5)}" if long else f"{wait}|{talk}",
            "TRANSFER": f"2000|from-internal|{wait}|{talk}|1" if long else "2000|from-internal",
            "BLINDTRANSFER": f"2001|from-internal|{wait}|{talk}|2",
            "ATTENDEDTRANSFER": f"BRIDGE|br-{call}|{wait}|{talk}|1" if long else f"APP|Playback|{wait}|{talk}|1",
        }[verb]
        add(t2, f"{t2}|{callid}|{queue}|{chan}|{verb}|{data}")

    rows.sort(key=lambda row: (row[0], row[1]))
    lines = [line for _, _, line in rows]
    assert len(set(lines)) == len(lines), "every line must be distinct (event ids come from the line)"
    if malformed:
        for position, bad in zip(MALFORMED_AT, MALFORMED, strict=True):
            lines.insert(position - 1, bad.format(ts=int(now) - 3600))
    return lines


# -- the reference: a supervisor counting verbs by hand ---------------------------------------------


def reference(lines: list[str]) -> dict[str, Any]:
    """Per-queue counters, waiting calls and agent states, from a plain split of each line on '|'."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    entered: dict[tuple[str, str], bool] = {}
    agents: dict[str, tuple[str, str | None]] = {}
    for line in lines:
        f = line.split("|")
        if len(f) < 5 or not f[0].isdigit():
            continue
        callid, queue, member, verb = f[1], f[2], f[3], f[4]
        agent = re.sub(r"^(?:SIP|PJSIP|Local|Agent)/([^@/-]+).*$", r"\1", member)
        if verb == "ENTERQUEUE":
            counts[queue]["offered"] += 1
            entered[(queue, callid)] = True
        elif verb == "CONNECT":
            counts[queue]["answered"] += 1
            entered[(queue, callid)] = False
        elif verb in ABANDON_VERBS:
            counts[queue]["abandoned"] += 1
            entered[(queue, callid)] = False
        elif verb in HANDLED_VERBS:
            counts[queue]["handled"] += 1
        elif verb == "RINGNOANSWER":
            counts[queue]["missed"] += 1
        elif verb in ("AGENTLOGIN", "ADDMEMBER", "UNPAUSE", "UNPAUSEALL"):
            agents[agent] = ("available", None)
        elif verb in ("AGENTLOGOFF", "REMOVEMEMBER"):
            agents[agent] = ("logged_out", None)
        elif verb in ("PAUSE", "PAUSEALL"):
            agents[agent] = ("break", f[5] if len(f) > 5 and f[5] else "paused")
    waiting = Counter(queue for (queue, _), still in entered.items() if still)
    return {"queues": counts, "waiting": waiting, "agents": agents}


# -- helpers --------------------------------------------------------------------------------------


async def prepared_tenant(server: RunningServer, label: str) -> str:
    """A fresh tenant whose day (UTC) began four hours ago, so the whole log falls on its today."""
    tenant = f"{label}-{secrets.token_hex(3)}"
    starts_at, _ = day_started_hours_ago(4)
    await put_settings(server, tenant, day_starts_at=starts_at, timezone="UTC")
    return tenant


async def run_cli(*args: str) -> tuple[int, str, str]:
    """``python -m server ingest-queue-log …`` as a child process (no database settings in its environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WALLBOARD_", "DATABASE_URL", "REDIS_URL"))}
    env["WALLBOARD_JWT_SECRET"] = TEST_SECRET
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "ingest-queue-log", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=240)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def summary_of(stdout: str) -> dict[str, int]:
    found = re.search(r"(\d+) lines read, (\d+) events sent: (\d+) accepted, (\d+) duplicates, (\d+) rejected; "
                      r"(\d+) unparseable lines", stdout)
    assert found, stdout
    keys = ("lines", "events", "accepted", "duplicates", "rejected", "errors")
    return dict(zip(keys, map(int, found.groups()), strict=True))


def event_lines(lines: list[str], malformed: tuple[int, ...] = MALFORMED_AT) -> int:
    """Lines that give an event: all but the malformed ones (RINGNOANSWER gives call.missed)."""
    return sum(1 for n, line in enumerate(lines, 1) if n not in malformed)


def write_log(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# -- tests ----------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
async def test_cli_feeds_a_day_that_equals_a_hand_count(ql_server: RunningServer, tmp_path: Path) -> None:
    """10,000+ lines of every verb fed by the CLI give live queue counters and agent states equal to a hand count."""
    tenant = await prepared_tenant(ql_server, "qlcli")
    lines = generate_log(time.time())
    assert len(lines) >= 10_000
    verbs = {line.split("|")[4] for line in lines if line.count("|") >= 4}
    assert set(ALL_VERBS) <= verbs, set(ALL_VERBS) - verbs
    path = write_log(tmp_path / "queue_log", lines)
    assert lines[MALFORMED_AT[0] - 1] == MALFORMED[0] and "FROBNICATE" in lines[MALFORMED_AT[1] - 1]

    code, out, err = await run_cli(str(path), "--tenant", tenant, "--url", ql_server.url)

    assert code == 1, (out, err)  # the malformed lines were refused; the rest went in
    reported = {int(n) for n in re.findall(rf"^{re.escape(str(path))}:(\d+): ", err, re.MULTILINE)}
    assert reported == set(MALFORMED_AT), err
    assert "unknown event 'FROBNICATE'" in err and "epoch" in err
    summary = summary_of(out)
    assert summary["lines"] == len(lines)
    assert summary["errors"] == len(MALFORMED_AT)
    assert summary["accepted"] == summary["events"] == event_lines(lines)
    assert (summary["duplicates"], summary["rejected"]) == (0, 0)

    ref = reference(lines)
    async with ql_server.client(ql_server.token(tenant, "supervisor")) as client:
        overview = (await client.get("/api/metrics/live")).json()["data"]
        agents = (await client.get("/api/metrics/agents/status")).json()["data"]
    by_queue = {q["queue_id"]: q for q in overview["queues"]}
    assert set(by_queue) == set(QUEUES)
    for queue in QUEUES:
        got, expected = by_queue[queue]["today"], ref["queues"][queue]
        for key in ("offered", "answered", "abandoned", "handled", "missed"):
            assert got[key] == expected[key], (queue, key, got[key], expected[key])
        assert by_queue[queue]["waiting"] == ref["waiting"][queue], queue
    for key in ("offered", "answered", "abandoned", "handled"):
        assert overview["today"][key] == sum(c[key] for c in ref["queues"].values()), key
    states = {agent: state for agent, (state, _) in ref["agents"].items()}
    assert set(states) == set(AGENTS)
    assert overview["agents"]["logged_in"] == sum(s != "logged_out" for s in states.values())
    for state in ("available", "break", "on_call", "wrap_up", "other"):
        assert overview["agents"]["by_state"][state] == list(states.values()).count(state), state
    listed = {a["agent_id"]: (a["state"], a["reason"]) for a in agents}
    for agent, expected_state in ref["agents"].items():
        assert listed[agent] == expected_state, agent
    assert {"available", "break", "logged_out"} <= set(states.values())


@pytest.mark.timeout(300)
async def test_posting_the_file_twice_gives_duplicates(ql_server: RunningServer) -> None:
    """The file as text/plain in one request: 207 naming the malformed lines, only duplicates the second time."""
    tenant = await prepared_tenant(ql_server, "qlpost")
    lines = generate_log(time.time(), seed=9, min_lines=9_992)  # every line but the malformed is an event
    body = "".join(line + "\n" for line in lines).encode()
    expected_events = event_lines(lines)
    assert expected_events <= ql_server.settings.max_events
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    async with ql_server.client(ql_server.token(tenant, "ingest")) as client:
        first = await client.post("/api/ingest/asterisk/queue-log", content=body, headers=headers)
        second = await client.post("/api/ingest/asterisk/queue-log", content=body, headers=headers)
    for response in (first, second):
        assert response.status_code == 207, response.text
        data = response.json()["data"]
        assert data["lines"] == len(lines)
        assert [item["line"] for item in data["rejected"]] == list(MALFORMED_AT)
        assert all(item["error"] for item in data["rejected"])
    assert first.json()["data"]["accepted"] == expected_events
    assert first.json()["data"]["duplicates"] == 0
    assert second.json()["data"]["accepted"] == 0
    assert second.json()["data"]["duplicates"] == expected_events


async def test_cli_resumes_from_its_saved_offset(ql_server: RunningServer, tmp_path: Path) -> None:
    """A second CLI run sends nothing already sent; lines appended since are the only ones it sends."""
    tenant = await prepared_tenant(ql_server, "qlresume")
    lines = generate_log(time.time(), min_lines=400, seed=3, malformed=False)
    head, tail = lines[:300], lines[300:]
    path = write_log(tmp_path / "queue_log", head)
    state = tmp_path / "offset.json"
    args = (str(path), "--tenant", tenant, "--url", ql_server.url, "--state-file", str(state), "--batch", "64")

    code, out, err = await run_cli(*args)
    assert code == 0, (out, err)
    first = summary_of(out)
    assert first["lines"] == len(head) and first["accepted"] == first["events"] > 0

    code, out, err = await run_cli(*args)
    assert code == 0, (out, err)
    assert summary_of(out) == dict.fromkeys(first, 0)

    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in tail))
    code, out, err = await run_cli(*args)
    assert code == 0, (out, err)
    third = summary_of(out)
    assert third["lines"] == len(tail)
    assert third["accepted"] == third["events"] == event_lines(tail, malformed=())
    assert third["duplicates"] == 0


async def test_wrong_content_type_and_garbage(ql_server: RunningServer) -> None:
    """A JSON Content-Type gets 415; a body of only garbage gets 422 naming every line; octet-stream is taken."""
    tenant = await prepared_tenant(ql_server, "qlbad")
    url = "/api/ingest/asterisk/queue-log"
    ts = int(time.time()) - 60
    async with ql_server.client(ql_server.token(tenant, "ingest")) as client:
        wrong = await client.post(url, content=b"[]", headers={"Content-Type": "application/json"})
        assert wrong.status_code == 415, wrong.text
        error = wrong.json()["error"]
        assert error["code"] == "unsupported_media_type"
        assert "text/plain" in error["message"] and "/api/events" in error["message"]

        garbage = await client.post(url, content=b"hello\n\nworld|x\n1|2|3|4|NOPE\n",
                                    headers={"Content-Type": "text/plain"})
        assert garbage.status_code == 422, garbage.text
        data = garbage.json()["data"]
        assert (data["accepted"], data["duplicates"], data["lines"]) == (0, 0, 4)
        assert [item["line"] for item in data["rejected"]] == [1, 3, 4]

        good = await client.post(url, content=f"{ts}|{ts}.1|sales|NONE|ENTERQUEUE||5551234\n".encode(),
                                 headers={"Content-Type": "application/octet-stream"})
        assert good.status_code == 200, good.text
        assert good.json()["data"]["accepted"] == 1

    async with ql_server.client(ql_server.token(tenant, "supervisor")) as client:
        forbidden = await client.post(url, content=b"", headers={"Content-Type": "text/plain"})
    assert forbidden.status_code == 403


async def test_hold_lines_give_aht_with_hold_time(ql_server: RunningServer) -> None:
    """HOLD/UNHOLD lines make the call's hold time (COMPLETEAGENT carries none): live AHT and the rollups count the
    spans, also when the hold lines come after the completion; the same file again changes nothing."""
    from .test_activity_events import rebuild_live
    from .test_seed_history import rollups, tenant_conn

    tenant = await prepared_tenant(ql_server, "qlhold")
    t0 = int(time.time()) - 3600
    held = [f"{t0 + 40}|{t0}.1|sales|SIP/2001|HOLD|", f"{t0 + 70}|{t0}.1|sales|SIP/2001|UNHOLD|",
            f"{t0 + 100}|{t0}.1|sales|SIP/2001|HOLD|"]  # 30 s, then on hold until the completion: 30 s more
    rest = [f"{t0}|{t0}.1|sales|NONE|ENTERQUEUE||5551234", f"{t0 + 10}|{t0}.1|sales|SIP/2001|CONNECT|10|x|1",
            f"{t0 + 130}|{t0}.1|sales|SIP/2001|COMPLETEAGENT|10|120|1",
            f"{t0}|{t0}.2|sales|NONE|ENTERQUEUE||5551235", f"{t0 + 5}|{t0}.2|sales|SIP/2002|CONNECT|5|y|1",
            f"{t0 + 65}|{t0}.2|sales|SIP/2002|COMPLETEAGENT|5|60|1"]
    headers = {"Content-Type": "text/plain; charset=utf-8"}

    async def post(lines: list[str]) -> dict[str, Any]:
        async with ql_server.client(ql_server.token(tenant, "ingest")) as client:
            response = await client.post("/api/ingest/asterisk/queue-log", content="".join(f"{x}\n" for x in lines),
                                         headers=headers)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    async def aht() -> tuple[float, float, float]:
        async with ql_server.client(ql_server.token(tenant, "supervisor")) as client:
            overview = (await client.get("/api/metrics/live")).json()["data"]
            agents = (await client.get("/api/metrics/agents/status")).json()["data"]
        by_agent = {a["agent_id"]: a["today"]["aht_s"] for a in agents}
        (sales,) = [q for q in overview["queues"] if q["queue_id"] == "sales"]
        return sales["today"]["aht_s"], by_agent["2001"], by_agent["2002"]

    assert (await post(rest))["accepted"] == len(rest)
    assert await aht() == (90.0, 120.0, 60.0)  # no hold events yet: hold_s 0
    assert (await post(held))["accepted"] == len(held)  # after the completion
    assert await aht() == (120.0, 180.0, 60.0)
    assert (await post(held + rest))["duplicates"] == len(held) + len(rest)
    assert await aht() == (120.0, 180.0, 60.0)

    dsn = ql_server.settings.database_url
    assert dsn is not None
    conn = await tenant_conn(dsn, tenant)
    try:
        _, daily, _ = await rollups(conn, tenant)
        got = {(d, k): (row["handled"], row["hold_ms"], row["handle_ms"]) for (d, k, _), row in daily.items()
               if row["handled"]}
        assert got == {("queue", "sales"): (2, 60_000, 240_000), ("agent", "2001"): (1, 60_000, 180_000),
                       ("agent", "2002"): (1, 0, 60_000)}
        record = await conn.fetchrow("SELECT hold_s, handle_s FROM agent_metrics WHERE client_id = $1 AND call_id = $2",
                                     tenant, f"{t0}.1")
        assert (record["hold_s"], record["handle_s"]) == (60.0, 180.0)
    finally:
        await conn.close()
    rebuild_live(ql_server, tenant)
    assert await aht() == (120.0, 180.0, 60.0)
