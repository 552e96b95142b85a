"""The cache behind every source: refresh before expiry, never past it, one fetch for concurrent callers."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from txtoken.credentials import Credential
from txtoken.credentials._cache import CredentialCache
from txtoken.errors import ConfigurationError, CredentialUnavailable

from .fakes import Clock


class CountingFetch:
    """A fetch that takes ``delay`` seconds and returns a new credential expiring ``lifetime`` seconds from now."""

    def __init__(self, clock: Clock, *, lifetime: float | None = 300, delay: float = 0.0, fail: bool = False) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.delay = delay
        self.fail = fail
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> Credential:
        with self._lock:
            self.calls += 1
            n = self.calls
        time.sleep(self.delay)
        if self.fail:
            raise CredentialUnavailable(f"fetch {n} failed")
        expires_at = None if self.lifetime is None else self.clock() + self.lifetime
        return Credential(f"credential-{n}", expires_at)


def test_served_from_cache_until_the_refresh_margin(clock: Clock) -> None:
    cache: CredentialCache[None] = CredentialCache(refresh_margin=60, clock=clock)
    fetch = CountingFetch(clock, lifetime=300)
    assert cache.get(None, fetch).value == "credential-1"
    clock.advance(239)
    assert cache.get(None, fetch).value == "credential-1"
    clock.advance(2)  # 59 s before expiry: inside the margin
    assert cache.get(None, fetch).value == "credential-2"
    assert fetch.calls == 2


def test_short_lived_credential_is_refreshed_at_half_its_remaining_life(clock: Clock) -> None:
    cache: CredentialCache[None] = CredentialCache(refresh_margin=60, clock=clock)
    fetch = CountingFetch(clock, lifetime=30)  # already inside the margin when fetched
    cache.get(None, fetch)
    clock.advance(14)
    cache.get(None, fetch)
    assert fetch.calls == 1
    clock.advance(2)
    cache.get(None, fetch)
    assert fetch.calls == 2


def test_never_served_past_expiry(clock: Clock) -> None:
    cache: CredentialCache[None] = CredentialCache(refresh_margin=0, clock=clock)
    fetch = CountingFetch(clock, lifetime=10)
    first = cache.get(None, fetch)
    clock.advance(10)
    second = cache.get(None, fetch)
    assert second.value != first.value
    assert second.expires_at is not None and second.expires_at > clock()


def test_credential_without_expiry_is_kept_until_its_tag_changes(clock: Clock) -> None:
    cache: CredentialCache[None] = CredentialCache(clock=clock)
    fetch = CountingFetch(clock, lifetime=None)
    cache.get(None, fetch, tag="v1")
    clock.advance(10**7)
    assert cache.get(None, fetch, tag="v1").value == "credential-1"
    assert cache.get(None, fetch, tag="v2").value == "credential-2"


def test_keys_are_cached_separately(clock: Clock) -> None:
    cache: CredentialCache[str] = CredentialCache(clock=clock)
    fetch = CountingFetch(clock)
    a, b = cache.get("a", fetch), cache.get("b", fetch)
    assert (cache.get("a", fetch), cache.get("b", fetch)) == (a, b)
    assert fetch.calls == 2


def test_concurrent_threads_trigger_one_fetch(clock: Clock) -> None:
    cache: CredentialCache[None] = CredentialCache(clock=clock)
    fetch = CountingFetch(clock, delay=0.1)
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda _: cache.get(None, fetch), range(64)))
    assert fetch.calls == 1
    assert {r.value for r in results} == {"credential-1"}


@pytest.mark.anyio
async def test_concurrent_tasks_trigger_one_fetch_off_the_event_loop(clock: Clock) -> None:
    cache: CredentialCache[None] = CredentialCache(clock=clock)
    fetch = CountingFetch(clock, delay=0.1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    results = await asyncio.gather(*(cache.aget(None, fetch) for _ in range(200)))
    tick_task.cancel()
    assert fetch.calls == 1
    assert {r.value for r in results} == {"credential-1"}
    assert ticks >= 5, "the event loop was blocked during the fetch"


@pytest.mark.anyio
async def test_threads_and_tasks_together_trigger_one_fetch(clock: Clock) -> None:
    cache: CredentialCache[None] = CredentialCache(clock=clock)
    fetch = CountingFetch(clock, delay=0.2)
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(cache.get, None, fetch) for _ in range(16)]
        results = await asyncio.gather(*(cache.aget(None, fetch) for _ in range(50)))
        results += [f.result() for f in futures]
    assert fetch.calls == 1
    assert {r.value for r in results} == {"credential-1"}


def test_callers_waiting_on_a_failing_fetch_share_its_error(clock: Clock) -> None:
    cache: CredentialCache[None] = CredentialCache(clock=clock)
    fetch = CountingFetch(clock, delay=0.1, fail=True)
    barrier = threading.Barrier(16)

    def call() -> str:
        barrier.wait()
        with pytest.raises(CredentialUnavailable) as info:
            cache.get(None, fetch)
        return info.value.message

    with ThreadPoolExecutor(max_workers=16) as pool:
        messages = set(pool.map(lambda _: call(), range(16)))
    assert fetch.calls == 1
    assert messages == {"fetch 1 failed"}
    with pytest.raises(CredentialUnavailable, match="fetch 2 failed"):
        cache.get(None, fetch)  # a later call tries again


@pytest.mark.anyio
async def test_tasks_waiting_on_a_failing_fetch_share_its_error(clock: Clock) -> None:
    cache: CredentialCache[None] = CredentialCache(clock=clock)
    fetch = CountingFetch(clock, delay=0.1, fail=True)
    results = await asyncio.gather(*(cache.aget(None, fetch) for _ in range(20)), return_exceptions=True)
    assert fetch.calls == 1
    assert all(isinstance(r, CredentialUnavailable) for r in results)


def test_failed_refresh_does_not_serve_the_previous_credential(clock: Clock) -> None:
    cache: CredentialCache[None] = CredentialCache(refresh_margin=60, clock=clock)
    fetch = CountingFetch(clock, lifetime=300)
    cache.get(None, fetch)
    clock.advance(250)
    fetch.fail = True
    with pytest.raises(CredentialUnavailable):
        cache.get(None, fetch)
    with pytest.raises(CredentialUnavailable):
        cache.get(None, fetch)


def test_one_cache_serves_several_event_loops(clock: Clock) -> None:
    cache: CredentialCache[None] = CredentialCache(refresh_margin=0, clock=clock)
    fetch = CountingFetch(clock, lifetime=10)

    async def burst() -> set[str]:
        return {c.value for c in await asyncio.gather(*(cache.aget(None, fetch) for _ in range(10)))}

    assert asyncio.run(burst()) == {"credential-1"}
    clock.advance(11)
    assert asyncio.run(burst()) == {"credential-2"}


def test_negative_margin_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        CredentialCache(refresh_margin=-1)
