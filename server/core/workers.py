"""``wallboard serve --workers N``: N server processes on one listening socket, kept running.

The supervisor (the process the operator started) binds the port once and starts N worker
processes (``python -m server serve --worker-fd FD``) that inherit the listening socket: the
kernel hands each new connection to whichever worker accepts it first, so all share the port
with nothing in front. A worker that dies is started again (after a short pause when it dies
at once, so a broken configuration does not spin); the others keep serving meanwhile.
SIGTERM/SIGINT stop every worker gracefully (SIGKILL after ``STOP_PATIENCE_S``).

Each worker is a whole server: its own pools, its own Redis subscription, its own share of the
background work (which coordinates across processes through PostgreSQL advisory locks and Redis
``SET NX`` locks, as it does across hosts). ``PROMETHEUS_MULTIPROC_DIR`` (a fresh directory
unless the operator set one) makes ``GET /metrics`` of any worker show all of them merged.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger("wallboard.workers")

STOP_PATIENCE_S = 15.0
RESTART_PAUSE_S = 1.0  # a worker that lived less than this is restarted only after this pause
POLL_S = 0.2


def listening_socket(host: str, port: int) -> socket.socket:
    """The one socket every worker accepts on (inheritable, so children get it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Workers:
    """The supervisor of N worker processes sharing ``sock``; ``run`` blocks until stopped."""

    def __init__(self, count: int, sock: socket.socket, env: Mapping[str, str], *, argv: Sequence[str] = (),
                 on_exit: Callable[[int], None] | None = None) -> None:
        self.count = count
        self.sock = sock
        self.env = dict(env)
        self.argv = list(argv)  # further arguments of each worker's `serve` (e.g. --demo for worker 0)
        self.on_exit = on_exit  # told the pid of each worker that ended (its metrics leave the live view)
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self.started: list[float] = [0.0] * count
        self.own_metrics_dir: str | None = None
        if not self.env.get("PROMETHEUS_MULTIPROC_DIR"):
            self.own_metrics_dir = tempfile.mkdtemp(prefix="wallboard-metrics-")
            self.env["PROMETHEUS_MULTIPROC_DIR"] = self.own_metrics_dir

    def spawn(self, index: int) -> None:
        env = {**self.env, "WALLBOARD_WORKER_ID": str(index)}
        argv = [sys.executable, "-m", "server", "serve", "--worker-fd", str(self.sock.fileno()),
                *(self.argv if index == 0 else [a for a in self.argv if a != "--demo"])]
        self.procs[index] = subprocess.Popen(argv, env=env, pass_fds=(self.sock.fileno(),))
        self.started[index] = time.monotonic()
        log.info("workers.started", extra={"worker": index, "pid": self.procs[index].pid})  # type: ignore[union-attr]

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None and p.poll() is None]

    def run(self) -> None:
        """Start every worker and restart those that end, until SIGTERM/SIGINT (SystemExit/KeyboardInterrupt)."""
        try:
            for index in range(self.count):
                self.spawn(index)
            while True:
                time.sleep(POLL_S)
                for index, proc in enumerate(self.procs):
                    if proc is None or proc.poll() is None:
                        continue
                    log.warning("workers.exited", extra={"worker": index, "pid": proc.pid, "code": proc.returncode})
                    if self.on_exit is not None:
                        self.on_exit(proc.pid)
                    self.procs[index] = None
                    if time.monotonic() - self.started[index] < RESTART_PAUSE_S:
                        time.sleep(RESTART_PAUSE_S)
                    self.spawn(index)
        finally:
            self.stop()

    def stop(self) -> None:
        """SIGTERM every worker, wait for them (SIGKILL the late ones), drop the metrics directory made here."""
        alive = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in alive:
            proc.terminate()
        deadline = time.monotonic() + STOP_PATIENCE_S
        for proc in alive:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = [None] * self.count
        self.sock.close()
        if self.own_metrics_dir is not None and Path(self.own_metrics_dir).is_dir():
            shutil.rmtree(self.own_metrics_dir, ignore_errors=True)


def worker_socket(fd: int) -> socket.socket:
    """The listening socket a worker inherited from its supervisor."""
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock


def child_env(base: Mapping[str, str], **settings: str | None) -> dict[str, str]:
    """``base`` with the given variables set (None: left as it is)."""
    env = dict(base)
    env.update({name: value for name, value in settings.items() if value is not None})
    return env
