"""Who may open a WebSocket: a cap on the process's connections and on each client address.

A connection is counted from its handshake (before it authenticates) to its close, so
sockets that never send a token hold a place like any other and cannot grow without bound.
"""

from __future__ import annotations


class Admission:
    """Counts the process's open WebSocket connections, in all and per client address."""

    def __init__(self, max_total: int, max_per_address: int) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.total = 0
        self.by_address: dict[str, int] = {}

    def enter(self, address: str) -> str | None:
        """Count a new connection; the reason it is refused (nothing counted then), or None."""
        if self.total >= self.max_total:
            return "server overloaded: too many connections"
        held = self.by_address.get(address, 0)
        if held >= self.max_per_address:
            return "too many connections from this address"
        self.total += 1
        self.by_address[address] = held + 1
        return None

    def leave(self, address: str) -> None:
        self.total -= 1
        held = self.by_address[address] - 1
        if held:
            self.by_address[address] = held
        else:
            del self.by_address[address]
