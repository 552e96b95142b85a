"""The in-memory replay store: a key is accepted once until it expires, and a full store refuses, never forgets."""

from __future__ import annotations

import threading

import pytest

from txtoken.errors import ReplayStoreUnavailable
from txtoken.replay import MemoryReplayStore

from .conftest import FakeClock


def test_a_key_is_accepted_once_until_it_expires() -> None:
    clock = FakeClock(1000.0)
    store = MemoryReplayStore(clock=clock)
    assert store.first_use("wpt:a", 1010.0) is True
    assert store.first_use("wpt:a", 1010.0) is False
    clock.advance(9.0)
    assert store.first_use("wpt:a", 1010.0) is False
    clock.advance(1.0)
    assert store.first_use("wpt:a", 1020.0) is True


def test_expired_keys_are_forgotten_as_new_ones_arrive() -> None:
    clock = FakeClock(1000.0)
    store = MemoryReplayStore(clock=clock)
    for n in range(50):
        store.first_use(f"k{n}", 1001.0)
    clock.advance(2.0)
    store.first_use("fresh", 1100.0)
    assert len(store) == 1


def test_a_full_store_refuses_a_new_key_instead_of_forgetting_an_unexpired_one() -> None:
    clock = FakeClock(1000.0)
    store = MemoryReplayStore(max_entries=2, clock=clock)
    assert store.first_use("a", 1100.0)
    assert store.first_use("b", 1100.0)
    with pytest.raises(ReplayStoreUnavailable) as caught:
        store.first_use("c", 1100.0)
    assert caught.value.http_status == 503 and caught.value.grpc_status == "UNAVAILABLE"
    assert store.first_use("a", 1100.0) is False


@pytest.mark.anyio
async def test_the_async_form_shares_the_same_memory() -> None:
    store = MemoryReplayStore()
    assert store.first_use("x", 4_000_000_000.0)
    assert await store.afirst_use("x", 4_000_000_000.0) is False
    assert await store.afirst_use("y", 4_000_000_000.0) is True


def test_concurrent_first_uses_of_one_key_admit_exactly_one() -> None:
    store = MemoryReplayStore()
    results: list[bool] = []
    barrier = threading.Barrier(16)

    def use() -> None:
        barrier.wait()
        results.append(store.first_use("same", 4_000_000_000.0))

    threads = [threading.Thread(target=use) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert results.count(True) == 1 and len(results) == 16


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryReplayStore(max_entries=0)
