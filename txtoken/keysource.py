"""Where a verifier gets its keys: a static set, a JWKS file, or the TTS's JWKS URL.

A key source answers one question: the key for this ``kid``. :meth:`KeySource.cached_key` answers from memory
(no network; a file source may ``stat`` its file); :meth:`fetch_key` and :meth:`afetch_key` may refresh first.
Keys only ever come from this configuration, never from a token.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

import httpx

from txtoken import telemetry
from txtoken.errors import ConfigurationError, KeysUnavailable, TxTokenError, UnknownKey
from txtoken.keys import KeySet, VerificationKey, key_index, load_jwks

__all__ = ["JwksFileKeySource", "KeySource", "RemoteJwksKeySource", "StaticKeySource", "key_source"]


@runtime_checkable
class KeySource(Protocol):
    """The keys a verifier trusts, by ``kid``."""

    def cached_key(self, kid: str) -> VerificationKey | None:
        """The key if it is known and fresh, without network I/O; None if a fetch is needed (or might help)."""

    def fetch_key(self, kid: str) -> VerificationKey:
        """The key, refreshing if needed (may block). Raises :class:`UnknownKey` or :class:`KeysUnavailable`."""

    async def afetch_key(self, kid: str) -> VerificationKey:
        """The key, refreshing if needed, without blocking the event loop."""


class StaticKeySource:
    """A fixed set of keys; ``retire_at`` (kid -> NumericDate) stops accepting a key from that time on."""

    def __init__(
        self,
        keys: Iterable[VerificationKey],
        *,
        retire_at: Mapping[str, int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = key_index(keys)
        self._retire_at = dict(retire_at or {})
        self._clock = clock

    @classmethod
    def from_key_set(cls, keys: KeySet, *, clock: Callable[[], float] = time.time) -> StaticKeySource:
        """The keys a key set publishes, each previous key accepted until its ``retire_at``."""
        retiring = {p.key.kid: p.retire_at for p in keys.previous if p.retire_at is not None}
        published = [keys.active.verification_key, *(p.key for p in keys.previous)]
        return cls(published, retire_at=retiring, clock=clock)

    def cached_key(self, kid: str) -> VerificationKey | None:
        key = self._keys.get(kid)
        if key is not None and self._retire_at and self._clock() >= self._retire_at.get(kid, float("inf")):
            return None
        return key

    def fetch_key(self, kid: str) -> VerificationKey:
        key = self.cached_key(kid)
        if key is None:
            raise UnknownKey("no key with this kid")
        return key

    async def afetch_key(self, kid: str) -> VerificationKey:
        return self.fetch_key(kid)


class JwksFileKeySource:
    """A JWKS file, reloaded when it changes (checked at most every ``check_interval`` seconds, and on unknown kid).

    A file that cannot be read or parsed keeps the last good keys; if there never were any, lookups fail with
    :class:`KeysUnavailable`.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, check_interval: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._path = Path(path)
        self._check_interval = check_interval
        self._clock = clock
        self._keys: dict[str, VerificationKey] | None = None
        self._raw: bytes | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()
        self._reload()

    def _reload(self) -> None:
        with self._lock:
            self._checked_at = self._clock()
            try:
                # Compare contents, not (inode, size, mtime): an in-place rewrite of the same size within one
                # timestamp tick changes none of those. The file is small and read at most every check_interval.
                raw = self._path.read_bytes()
                if raw == self._raw:
                    return
                keys = key_index(load_jwks(raw))
            except (OSError, ConfigurationError):
                return
            self._keys, self._raw = keys, raw

    def cached_key(self, kid: str) -> VerificationKey | None:
        if self._clock() - self._checked_at >= self._check_interval:
            self._reload()
        return None if self._keys is None else self._keys.get(kid)

    def fetch_key(self, kid: str) -> VerificationKey:
        self._reload()
        if self._keys is None:
            raise KeysUnavailable("the JWKS file cannot be read")
        key = self._keys.get(kid)
        if key is None:
            raise UnknownKey("no key with this kid")
        return key

    async def afetch_key(self, kid: str) -> VerificationKey:
        return self.fetch_key(kid)


class RemoteJwksKeySource:
    """The JWKS at a URL (normally the TTS's ``/.well-known/jwks.json``), fetched with httpx.

    - Keys are cached for ``ttl`` seconds, then refreshed on the next lookup.
    - An unknown ``kid`` triggers a refresh, at most once per ``min_refresh_interval`` seconds, so a stream of
      tokens with made-up ``kid`` values cannot hammer the endpoint. Concurrent refreshes are single-flight: one
      request, every caller waits for it.
    - When the endpoint fails, the last good keys are served for ``max_stale`` seconds after their last successful
      fetch; after that lookups fail closed with :class:`KeysUnavailable`.
    - Redirects are not followed; only ``https`` URLs are accepted unless ``allow_http`` is set (loopback and tests).
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 300.0,
        min_refresh_interval: float = 30.0,
        max_stale: float = 3600.0,
        timeout: float = 5.0,
        allow_http: bool = False,
        client: httpx.Client | None = None,
        async_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        scheme = httpx.URL(url).scheme
        if scheme != "https" and not (allow_http and scheme == "http"):
            raise ConfigurationError("the JWKS URL must use https (allow_http=True for loopback and tests)")
        self._url = url
        self._ttl = ttl
        self._min_refresh_interval = min_refresh_interval
        self._max_stale = max_stale
        self._timeout = timeout
        self._client = client
        self._async_client = async_client
        self._clock = clock
        self._keys: dict[str, VerificationKey] = {}
        self._fetched_at: float | None = None  # last success
        self._attempted_at = float("-inf")  # last attempt, success or not
        self._lock = threading.Lock()
        self._inflight: asyncio.Future[None] | None = None
        self.fetch_count = 0

    # -- state -------------------------------------------------------------------------------------------------------

    def _fresh(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self._ttl

    def _usable(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self._max_stale

    def _refresh_due(self, kid: str, now: float) -> bool:
        if self._fresh(now) and kid in self._keys:
            return False
        return now - self._attempted_at >= self._min_refresh_interval

    def _store(self, body: bytes) -> None:
        self._keys = key_index(load_jwks(body))
        self._fetched_at = self._clock()

    def _answer(self, kid: str) -> VerificationKey:
        if not self._usable(self._clock()):
            raise KeysUnavailable("the JWKS endpoint cannot be reached and no recent keys are cached")
        key = self._keys.get(kid)
        if key is None:
            raise UnknownKey("no key with this kid")
        return key

    @staticmethod
    def _check(response: httpx.Response) -> bytes:
        if response.status_code != 200:
            raise KeysUnavailable(f"the JWKS endpoint answered {response.status_code}")
        return response.content

    # -- lookups -----------------------------------------------------------------------------------------------------

    def cached_key(self, kid: str) -> VerificationKey | None:
        if not self._fresh(self._clock()):
            return None
        return self._keys.get(kid)

    def fetch_key(self, kid: str) -> VerificationKey:
        with self._lock:
            if self._refresh_due(kid, self._clock()):
                self._attempted_at = self._clock()
                self.fetch_count += 1
                with telemetry.operation("jwks_fetch") as outcome:
                    outcome.annotate("url", self._url)
                    try:
                        client = self._client or httpx.Client(timeout=self._timeout, follow_redirects=False)
                        try:
                            self._store(self._check(client.get(self._url)))
                        finally:
                            if self._client is None:
                                client.close()
                    except (httpx.HTTPError, KeysUnavailable, ConfigurationError) as exc:
                        outcome.fail(_fetch_error(exc))  # keep serving the last good keys until max_stale
        return self._answer(kid)

    async def afetch_key(self, kid: str) -> VerificationKey:
        if self._inflight is None and self._refresh_due(kid, self._clock()):
            self._attempted_at = self._clock()
            self._inflight = asyncio.ensure_future(self._afetch())
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
        return self._answer(kid)

    async def _afetch(self) -> None:
        self.fetch_count += 1
        try:
            with telemetry.operation("jwks_fetch") as outcome:
                outcome.annotate("url", self._url)
                try:
                    client = self._async_client or httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
                    try:
                        self._store(self._check(await client.get(self._url)))
                    finally:
                        if self._async_client is None:
                            await client.aclose()
                except (httpx.HTTPError, KeysUnavailable, ConfigurationError) as exc:
                    outcome.fail(_fetch_error(exc))  # keep serving the last good keys until max_stale
        finally:
            self._inflight = None


def _fetch_error(exc: Exception) -> str:
    """A failed fetch's stable code, or the transport error's class name (``ConnectError``); never its message."""
    return exc.code if isinstance(exc, TxTokenError) else type(exc).__name__


def key_source(
    keys: KeySource | KeySet | Iterable[VerificationKey], *, clock: Callable[[], float] = time.time
) -> KeySource:
    """Accept a key source, a key set (its published keys, retired on ``clock``) or plain verification keys."""
    if isinstance(keys, KeySource):
        return keys
    if isinstance(keys, KeySet):
        return StaticKeySource.from_key_set(keys, clock=clock)
    return StaticKeySource(keys)
