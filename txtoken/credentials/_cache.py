"""The cache every credential source uses: per-key entries, refresh before expiry, single-flight fetches.

A credential is served from the cache until its *refresh time*, ``expires_at - min(refresh_margin, remaining / 2)``
where ``remaining`` is its lifetime left when it was fetched. Taking at most half the remaining lifetime keeps a
credential that is already inside the margin (a file not yet rotated, a short-lived token) from being fetched again
on every call: refreshes then happen at halving intervals until it expires. Nothing is ever served past
``expires_at``. A credential without an expiry is cached until its *tag* changes (the file source tags entries with
the file's stat signature).

Fetches are blocking functions. Threads calling :meth:`CredentialCache.get` wait on one lock per key, so one fetch
runs and the others get its result. Asyncio tasks calling :meth:`CredentialCache.aget` first queue on a per-event-
loop lock, so one task per loop runs the fetch, in a worker thread, through the same thread lock. When a fetch fails,
the callers that were waiting for it get the same error instead of each trying again.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

from txtoken.credentials.base import Credential
from txtoken.errors import ConfigurationError, TxTokenError

__all__ = ["DEFAULT_REFRESH_MARGIN", "CredentialCache"]

#: Default seconds before a credential's expiry at which it is fetched again.
DEFAULT_REFRESH_MARGIN = 60.0

K = TypeVar("K", bound=Hashable)


class _Cached(NamedTuple):
    credential: Credential
    tag: object
    refresh_at: float


@dataclass(eq=False)
class _Entry:
    cached: _Cached | None = None  # replaced as a whole, so that readers without the lock see a consistent entry
    finished: int = 0  # fetches completed, successfully or not
    failure: TxTokenError | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = field(
        default_factory=weakref.WeakKeyDictionary
    )


class CredentialCache(Generic[K]):
    """Credentials by key (an audience, or ``None`` for a source with one credential)."""

    def __init__(
        self, *, refresh_margin: float = DEFAULT_REFRESH_MARGIN, clock: Callable[[], float] = time.time
    ) -> None:
        if not refresh_margin >= 0:
            raise ConfigurationError("refresh_margin must be zero or more seconds")
        self._margin = refresh_margin
        self._clock = clock
        self._entries: dict[K, _Entry] = {}
        self._guard = threading.Lock()

    def get(self, key: K, fetch: Callable[[], Credential], *, tag: object = None) -> Credential:
        """The cached credential for ``key`` if it is still good and its tag equals ``tag``; else ``fetch()``'s."""
        entry = self._entry(key)
        cached = self._cached(entry, tag)
        if cached is not None:
            return cached
        seen = entry.finished
        with entry.lock:
            return self._fetch_locked(entry, fetch, tag, seen)

    async def aget(self, key: K, fetch: Callable[[], Credential], *, tag: object = None) -> Credential:
        """As :meth:`get`, without blocking the event loop: the fetch runs in a worker thread."""
        entry = self._entry(key)
        cached = self._cached(entry, tag)
        if cached is not None:
            return cached
        seen = entry.finished
        async with self._loop_lock(entry):
            cached = self._cached(entry, tag)
            if cached is not None:
                return cached
            self._raise_shared_failure(entry, seen)
            return await asyncio.to_thread(self.get, key, fetch, tag=tag)

    def _entry(self, key: K) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            with self._guard:
                entry = self._entries.setdefault(key, _Entry())
        return entry

    def _loop_lock(self, entry: _Entry) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._guard:
            lock = entry.loop_locks.get(loop)
            if lock is None:
                lock = entry.loop_locks[loop] = asyncio.Lock()
        return lock

    def _cached(self, entry: _Entry, tag: object) -> Credential | None:
        cached = entry.cached
        if cached is not None and cached.tag == tag and self._clock() < cached.refresh_at:
            return cached.credential
        return None

    @staticmethod
    def _raise_shared_failure(entry: _Entry, seen: int) -> None:
        """If a fetch finished with an error while this caller waited, fail the same way rather than fetching again."""
        if entry.finished != seen and entry.failure is not None:
            raise type(entry.failure)(entry.failure.message)

    def _fetch_locked(self, entry: _Entry, fetch: Callable[[], Credential], tag: object, seen: int) -> Credential:
        cached = self._cached(entry, tag)
        if cached is not None:
            return cached
        self._raise_shared_failure(entry, seen)
        entry.failure = None
        try:
            credential = fetch()
        except TxTokenError as exc:
            entry.failure = exc
            entry.cached = None
            raise
        finally:
            entry.finished += 1
        entry.cached = _Cached(credential, tag, self._refresh_at(credential))
        return credential

    def _refresh_at(self, credential: Credential) -> float:
        if credential.expires_at is None:
            return math.inf
        remaining = credential.expires_at - self._clock()
        return credential.expires_at - min(self._margin, remaining / 2)
