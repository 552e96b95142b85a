"""Where a verifier gets its keys: a static set, a JWKS file, or the TTS's JWKS URL.

A key source answers one question: the key for this ``kid``. :meth:`KeySource.cached_key` answers from memory
(no network; a file source may ``stat`` its file); :meth:`fetch_key` and :meth:`afetch_key` may refresh first.
For a token without ``kid``, :meth:`KeySource.sole_kid` names the one key held for its ``alg``, if there is exactly
one. Keys only ever come from this configuration, never from a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

import httpx

from txtoken import telemetry
from txtoken.errors import ConfigurationError, KeysUnavailable, UnknownKey
from txtoken.keys import KeySet, VerificationKey, key_index, load_jwks

__all__ = [
    "JwksFileKeySource",
    "KeySource",
    "RemoteJwksKeySource",
    "StaticKeySource",
    "afind_sole_kid",
    "find_sole_kid",
    "key_source",
]

logger = logging.getLogger("txtoken.keysource")

_RETRY_FIRST = 0.1  # seconds before the first retry of a failed fetch; doubled on each further failure
_RETRY_MAX = 5.0  # the longest wait between retries while there are no usable keys


@runtime_checkable
class KeySource(Protocol):
    """The keys a verifier trusts, by ``kid``."""

    def cached_key(self, kid: str) -> VerificationKey | None:
        """The key if it is known and fresh, without network I/O; None if a fetch is needed (or might help)."""

    def fetch_key(self, kid: str) -> VerificationKey:
        """The key, refreshing if needed (may block). Raises :class:`UnknownKey` or :class:`KeysUnavailable`."""

    async def afetch_key(self, kid: str) -> VerificationKey:
        """The key, refreshing if needed, without blocking the event loop."""

    def sole_kid(self, alg: str) -> str | None:
        """The ``kid`` of the only key held that accepts ``alg``, without network I/O; None if none or several."""


def _sole_kid(keys: Iterable[VerificationKey], alg: str) -> str | None:
    found = [key.kid for key in keys if key.accepts(alg)]
    return found[0] if len(found) == 1 else None


# No key has an empty kid (JWKs and JWS headers with one are refused), so asking for it makes a source refresh, within
# its own throttle, and then answer UnknownKey: how a token without kid gets a source that has not fetched yet to fetch.
_NO_KEY_HAS_THIS_KID = ""


def _sole_or_refuse(keys: KeySource, alg: str) -> str:
    sole = keys.sole_kid(alg)
    if sole is None:
        raise UnknownKey("the token has no kid, and not exactly one key is held for its alg")
    return sole


def find_sole_kid(keys: KeySource, alg: str) -> str:
    """The ``kid`` to verify a token without one with: the only key ``keys`` hold for ``alg``, after one refresh if
    none or several are held now; :class:`UnknownKey` if the choice stays ambiguous (``kid`` is a SHOULD, §9.1)."""
    if keys.sole_kid(alg) is None:
        with contextlib.suppress(UnknownKey):
            keys.fetch_key(_NO_KEY_HAS_THIS_KID)
    return _sole_or_refuse(keys, alg)


async def afind_sole_kid(keys: KeySource, alg: str) -> str:
    """Like :func:`find_sole_kid`; a refresh, if one is needed, is awaited."""
    if keys.sole_kid(alg) is None:
        with contextlib.suppress(UnknownKey):
            await keys.afetch_key(_NO_KEY_HAS_THIS_KID)
    return _sole_or_refuse(keys, alg)


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
        """The keys a key set publishes (a pending one included), each accepted until it leaves the JWKS."""
        retiring = {p.key.kid: p.retire_at for p in keys.previous if p.retire_at is not None}
        published = [keys.active.verification_key, *(p.key for p in keys.previous)]
        if keys.pending is not None:
            retiring[keys.active.kid] = keys.pending.retire_previous_at
            published.append(keys.pending.key.verification_key)
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

    def sole_kid(self, alg: str) -> str | None:
        return _sole_kid((key for kid, key in self._keys.items() if self.cached_key(kid) is not None), alg)


class JwksFileKeySource:
    """A JWKS file, reloaded when it changes (checked at most every ``check_interval`` seconds, and on unknown kid).

    The file must be readable at construction (else :class:`ConfigurationError` naming the path and the error). A
    later rewrite that cannot be read or parsed keeps the last good keys.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, check_interval: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._path = Path(path)
        self._check_interval = check_interval
        self._clock = clock
        self._keys: dict[str, VerificationKey] = {}
        self._raw: bytes | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()
        problem = self._reload()
        if problem is not None:
            raise ConfigurationError(f"the JWKS file {self._path} {problem}")

    def _reload(self) -> str | None:
        """Re-read the file; what is wrong with it, if anything (the last good keys are kept)."""
        with self._lock:
            self._checked_at = self._clock()
            try:
                # Compare contents, not (inode, size, mtime): an in-place rewrite of the same size within one
                # timestamp tick changes none of those. The file is small and read at most every check_interval.
                raw = self._path.read_bytes()
                if raw == self._raw:
                    return None
                keys = key_index(load_jwks(raw))
            except OSError as exc:
                return f"cannot be read ({exc.strerror or type(exc).__name__})"
            except ConfigurationError as exc:
                return f"is not a usable JWKS ({exc.message})"
            self._keys, self._raw = keys, raw
            return None

    def cached_key(self, kid: str) -> VerificationKey | None:
        if self._clock() - self._checked_at >= self._check_interval:
            self._reload()
        return self._keys.get(kid)

    def fetch_key(self, kid: str) -> VerificationKey:
        self._reload()
        key = self._keys.get(kid)
        if key is None:
            raise UnknownKey("no key with this kid")
        return key

    async def afetch_key(self, kid: str) -> VerificationKey:
        return self.fetch_key(kid)

    def sole_kid(self, alg: str) -> str | None:
        if self._clock() - self._checked_at >= self._check_interval:
            self._reload()
        return _sole_kid(self._keys.values(), alg)


class _FetchFailed(Exception):
    """A JWKS fetch that brought no usable keys: ``reason`` to log (never the response body), ``code`` for telemetry."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class _RefreshBucket:
    """A token bucket for refreshes on an unknown ``kid``: ``burst`` at once, then one per ``interval`` seconds."""

    def __init__(self, burst: int, interval: float, now: float) -> None:
        self._burst = burst
        self._interval = interval
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> bool:
        if self._interval <= 0:
            return self._burst > 0
        self._tokens = min(self._burst, self._tokens + (now - self._at) / self._interval)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def _max_age(cache_control: str | None) -> float | None:
    """The ``max-age`` of a ``Cache-Control`` value (0 for ``no-store`` / ``no-cache``); None when absent."""
    if cache_control is None:
        return None
    for directive in cache_control.lower().split(","):
        name, _, value = directive.strip().partition("=")
        if name in ("no-store", "no-cache"):
            return 0.0
        if name == "max-age" and value.strip().isdigit():
            return float(value.strip())
    return None


class RemoteJwksKeySource:
    """The JWKS at a URL (normally the TTS's ``/.well-known/jwks.json``), fetched with httpx.

    - Keys are fresh for the response's ``Cache-Control: max-age``, bounded to [``min_ttl``, ``ttl``] (``ttl``
      without one, and when ``ttl`` is the smaller); the first lookup after that refreshes them.
    - An unknown ``kid`` while the keys are fresh triggers a refresh if the refresh bucket allows: ``refresh_burst``
      refreshes at once, refilled one per ``min_refresh_interval`` seconds. A legitimately new key is picked up at
      once; a stream of made-up ``kid`` values costs at most the burst, then one fetch per interval. Concurrent
      refreshes are single-flight: one request, every caller waits for it.
    - A failed fetch (unreachable, a status other than 200, a document that is not a usable JWKS) is logged at
      WARNING once per streak of failures and retried after a backoff that starts at 0.1 s and doubles, up to 5 s
      while there are no usable keys, else up to ``min_refresh_interval``. The last good keys are served for
      ``max_stale`` seconds after their last successful fetch; after that lookups fail closed with
      :class:`KeysUnavailable`.
    - :meth:`prefetch` / :meth:`aprefetch` fetch at start-up; :meth:`ready` says whether usable keys are held.
    - Redirects are not followed; only ``https`` URLs are accepted unless ``allow_http`` is set (loopback and tests).
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 300.0,
        min_ttl: float = 10.0,
        min_refresh_interval: float = 30.0,
        refresh_burst: int = 3,
        max_stale: float = 3600.0,
        timeout: float = 5.0,
        allow_http: bool = False,
        client: httpx.Client | None = None,
        async_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parsed = httpx.URL(url)
        if parsed.scheme != "https" and not (allow_http and parsed.scheme == "http"):
            raise ConfigurationError("the JWKS URL must use https (allow_http=True for loopback and tests)")
        if min(ttl, min_ttl, refresh_burst, min_refresh_interval) < 0:
            raise ConfigurationError("ttl, min_ttl, refresh_burst and min_refresh_interval must not be negative")
        self._url = url
        self._shown_url = str(parsed.copy_with(username=None, password=None))  # for logs: no credentials
        self._ttl = ttl
        self._min_ttl = min(min_ttl, ttl)
        self._min_refresh_interval = min_refresh_interval
        self._max_stale = max_stale
        self._timeout = timeout
        self._client = client
        self._async_client = async_client
        self._clock = clock
        self._keys: dict[str, VerificationKey] = {}
        self._fetched_at: float | None = None  # last success
        self._fresh_for = ttl
        self._retry_at = float("-inf")  # after a failure: no scheduled refresh before this
        self._failures = 0  # the current streak of failed fetches
        self._last_failure = "no fetch yet"
        self._bucket = _RefreshBucket(refresh_burst, min_refresh_interval, clock())
        self._lock = threading.Lock()
        self._inflight: asyncio.Future[None] | None = None
        self.fetch_count = 0

    # -- state -------------------------------------------------------------------------------------------------------

    def _fresh(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self._fresh_for

    def _usable(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self._max_stale

    def _refresh_due(self, kid: str, now: float) -> bool:
        if self._fresh(now):
            return kid not in self._keys and self._bucket.take(now)
        return now >= self._retry_at

    def _answer(self, kid: str) -> VerificationKey:
        if not self._usable(self._clock()):
            raise KeysUnavailable("the JWKS endpoint cannot be reached and no recent keys are cached")
        key = self._keys.get(kid)
        if key is None:
            raise UnknownKey("no key with this kid")
        return key

    def _succeeded(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            raise _FetchFailed(f"HTTP {response.status_code}", KeysUnavailable.code)
        try:
            published = load_jwks(response.content)  # its messages are fixed texts, never from the document
        except ConfigurationError as exc:
            raise _FetchFailed(exc.message, exc.code) from None
        except Exception as exc:  # any unreadable document is a failed fetch, whatever the parser raised
            raise _FetchFailed(f"not a usable JWKS ({type(exc).__name__})", ConfigurationError.code) from None
        try:
            keys = key_index(published)
        except ConfigurationError as exc:
            raise _FetchFailed("two different keys share a kid", exc.code) from None
        max_age = _max_age(response.headers.get("cache-control"))
        self._fresh_for = self._ttl if max_age is None else min(max(max_age, self._min_ttl), self._ttl)
        self._keys, self._fetched_at, self._retry_at = keys, self._clock(), float("-inf")
        if self._failures:
            logger.info("JWKS fetch from %s succeeded after %d failed attempt(s)", self._shown_url, self._failures)
        self._failures = 0

    def _failed(self, exc: Exception, outcome: telemetry.Outcome) -> None:
        if isinstance(exc, _FetchFailed):
            reason, code = exc.reason, exc.code
        else:
            reason = code = type(exc).__name__
        outcome.fail(code)
        now = self._clock()
        usable = self._usable(now)
        self._failures += 1
        self._last_failure = reason
        cap = self._min_refresh_interval if usable else _RETRY_MAX
        self._retry_at = now + min(_RETRY_FIRST * 2 ** min(self._failures - 1, 30), cap)
        if self._failures == 1:
            logger.warning(
                "JWKS fetch from %s failed: %s; %s",
                self._shown_url,
                reason,
                "serving the last good keys" if usable else "no keys to verify with until a fetch succeeds",
            )

    # -- fetching ----------------------------------------------------------------------------------------------------

    def _fetch(self) -> None:
        self.fetch_count += 1
        with telemetry.operation("jwks_fetch") as outcome:
            outcome.annotate("url", self._shown_url)
            try:
                client = self._client or httpx.Client(timeout=self._timeout, follow_redirects=False)
                try:
                    self._succeeded(client.get(self._url))
                finally:
                    if self._client is None:
                        client.close()
            except Exception as exc:  # transport errors, unreadable documents, anything on the way: a failed fetch
                self._failed(exc, outcome)

    async def _afetch(self) -> None:
        self.fetch_count += 1
        try:
            with telemetry.operation("jwks_fetch") as outcome:
                outcome.annotate("url", self._shown_url)
                try:
                    client = self._async_client or httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
                    try:
                        self._succeeded(await client.get(self._url))
                    finally:
                        if self._async_client is None:
                            await client.aclose()
                except Exception as exc:  # transport errors, unreadable documents, anything on the way
                    self._failed(exc, outcome)
        finally:
            self._inflight = None

    # -- start-up ----------------------------------------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether usable keys are held (a readiness check: refuse traffic until it is true)."""
        return self._usable(self._clock())

    def _check_ready(self) -> None:
        if not self.ready():
            raise KeysUnavailable(f"no keys from {self._shown_url}: {self._last_failure}")

    def prefetch(self) -> None:
        """Fetch the keys now (at start-up); raises :class:`KeysUnavailable` naming the URL and the cause."""
        with self._lock:
            self._fetch()
        self._check_ready()

    async def aprefetch(self) -> None:
        """Like :meth:`prefetch`, without blocking the event loop."""
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._afetch())
        await asyncio.shield(self._inflight)
        self._check_ready()

    # -- lookups -----------------------------------------------------------------------------------------------------

    def cached_key(self, kid: str) -> VerificationKey | None:
        if not self._fresh(self._clock()):
            return None
        return self._keys.get(kid)

    def sole_kid(self, alg: str) -> str | None:
        """From the keys last fetched (a lookup by ``kid`` or a prefetch fetches); None before any fetch."""
        return _sole_kid(self._keys.values(), alg)

    def fetch_key(self, kid: str) -> VerificationKey:
        with self._lock:
            if self._refresh_due(kid, self._clock()):
                self._fetch()
        return self._answer(kid)

    async def afetch_key(self, kid: str) -> VerificationKey:
        if self._inflight is None and self._refresh_due(kid, self._clock()):
            self._inflight = asyncio.ensure_future(self._afetch())
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
        return self._answer(kid)


def key_source(
    keys: KeySource | KeySet | Iterable[VerificationKey], *, clock: Callable[[], float] = time.time
) -> KeySource:
    """Accept a key source, a key set (its published keys, retired on ``clock``) or plain verification keys."""
    if isinstance(keys, KeySource):
        return keys
    if isinstance(keys, KeySet):
        return StaticKeySource.from_key_set(keys, clock=clock)
    return StaticKeySource(keys)
