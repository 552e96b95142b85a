"""The Redis replay store against a real redis-server: atomic set-if-absent with expiry, shared by replicas, sync
and asyncio, failing closed when Redis cannot be reached."""

from __future__ import annotations

import socket
import threading
import uuid

import pytest
import redis

from tests.conftest import RedisServer
from txtoken.errors import ReplayStoreUnavailable
from txtoken.replay_redis import RedisReplayStore

from .conftest import FakeClock


def _prefix() -> str:
    return f"test:{uuid.uuid4().hex}:"


def test_a_key_is_accepted_once(redis_server: RedisServer) -> None:
    store = RedisReplayStore(redis_server.url, prefix=_prefix())
    assert store.first_use("wpt:a", 2e9) is True
    assert store.first_use("wpt:a", 2e9) is False
    assert store.first_use("wpt:b", 2e9) is True
    store.close()


def test_the_key_expires_in_redis_at_expires_at(redis_server: RedisServer) -> None:
    clock = FakeClock(1000.0)
    prefix = _prefix()
    store = RedisReplayStore(redis_server.url, prefix=prefix, clock=clock)
    assert store.first_use("wpt:a", 1012.5)
    ttl = redis.Redis.from_url(redis_server.url).pttl(prefix + "wpt:a")
    assert 0 < ttl <= 12_500
    store.close()


def test_replicas_sharing_redis_accept_a_key_only_once(redis_server: RedisServer) -> None:
    prefix = _prefix()
    replica_a = RedisReplayStore(redis_server.url, prefix=prefix)
    replica_b = RedisReplayStore(redis_server.url, prefix=prefix)
    assert replica_a.first_use("wpt:shared", 2e9) is True
    assert replica_b.first_use("wpt:shared", 2e9) is False
    replica_a.close()
    replica_b.close()


def test_concurrent_checks_of_one_key_accept_exactly_one(redis_server: RedisServer) -> None:
    store = RedisReplayStore(redis_server.url, prefix=_prefix())
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def check() -> None:
        barrier.wait(timeout=10)
        results.append(store.first_use("wpt:race", 2e9))

    threads = [threading.Thread(target=check) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(results) == [False] * 7 + [True]
    store.close()


@pytest.mark.anyio
async def test_asyncio_callers_share_the_keys_of_sync_callers(redis_server: RedisServer) -> None:
    prefix = _prefix()
    store = RedisReplayStore(redis_server.url, prefix=prefix)
    assert await store.afirst_use("wpt:a", 2e9) is True
    assert await store.afirst_use("wpt:a", 2e9) is False
    assert store.first_use("wpt:a", 2e9) is False
    await store.aclose()
    store.close()


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_unreachable_redis_fails_closed() -> None:
    store = RedisReplayStore(_closed_port_url(), timeout=0.5)
    with pytest.raises(ReplayStoreUnavailable) as info:
        store.first_use("wpt:a", 2e9)
    assert info.value.http_status == 503 and info.value.grpc_status == "UNAVAILABLE"


@pytest.mark.anyio
async def test_unreachable_redis_fails_closed_for_asyncio_callers() -> None:
    store = RedisReplayStore(_closed_port_url(), timeout=0.5)
    with pytest.raises(ReplayStoreUnavailable):
        await store.afirst_use("wpt:a", 2e9)
    await store.aclose()


def test_fail_open_accepts_when_redis_is_unreachable_only_when_configured() -> None:
    store = RedisReplayStore(_closed_port_url(), timeout=0.5, fail_open=True)
    assert store.first_use("wpt:a", 2e9) is True
    assert store.first_use("wpt:a", 2e9) is True  # no replay protection while Redis is down: the documented trade


def test_a_store_needs_somewhere_to_store() -> None:
    from txtoken.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        RedisReplayStore()


def test_without_redis_py_the_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from txtoken.extras import MissingExtra

    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(MissingExtra, match=r"pip install 'txtoken\[redis\]'"):
        RedisReplayStore("redis://127.0.0.1:6379/0")
