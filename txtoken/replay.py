"""Single-use identifiers: a store that remembers each key until it expires.

A ``jti`` of a client assertion or of a Workload Proof Token may be used once within its lifetime. A store answers
``first_use(key, expires_at)``: ``True`` the first time a key is seen, ``False`` for every later use before
``expires_at`` (reported with :func:`txtoken.telemetry.replay_hit`). A store that cannot answer (full, unreachable)
raises :class:`~txtoken.errors.ReplayStoreUnavailable`: a replay check never fails open.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from typing import Protocol

from txtoken import telemetry
from txtoken.errors import ReplayStoreUnavailable

__all__ = ["MemoryReplayStore", "ReplayStore"]


class ReplayStore(Protocol):
    """Where single-use keys are remembered; callers namespace their keys (``"wpt:<jti>"``)."""

    def first_use(self, key: str, expires_at: float) -> bool:
        """Remember ``key`` until ``expires_at`` (Unix seconds); ``True`` only if it was not remembered already."""
        ...

    async def afirst_use(self, key: str, expires_at: float) -> bool:
        """The same, for asyncio callers."""
        ...


class MemoryReplayStore:
    """A bounded in-process store, for one process (several replicas need a shared store, such as Redis).

    Expired keys are forgotten as new ones arrive. When ``max_entries`` unexpired keys are held, a new key is refused
    with ``ReplayStoreUnavailable`` rather than forgetting a key that could then be replayed.
    """

    def __init__(self, max_entries: int = 100_000, *, clock: Callable[[], float] = time.time) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._queue: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def first_use(self, key: str, expires_at: float) -> bool:
        now = self._clock()
        with self._lock:
            self._forget_expired(now)
            known = self._expiry.get(key)
            if known is not None and known > now:
                telemetry.replay_hit(key)
                return False
            if len(self._expiry) >= self._max_entries:
                raise ReplayStoreUnavailable("the replay store is full")
            self._expiry[key] = expires_at
            heapq.heappush(self._queue, (expires_at, key))
            return True

    async def afirst_use(self, key: str, expires_at: float) -> bool:
        return self.first_use(key, expires_at)

    def _forget_expired(self, now: float) -> None:
        queue = self._queue
        while queue and queue[0][0] <= now:
            expires_at, key = heapq.heappop(queue)
            if self._expiry.get(key) == expires_at:
                del self._expiry[key]

    def __len__(self) -> int:
        return len(self._expiry)
