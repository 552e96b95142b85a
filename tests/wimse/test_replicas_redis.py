"""Two replicas of one service share WPT ``jti`` values through Redis: one accepts a WPT, the other refuses it."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import RedisServer
from tests.core.conftest import FakeClock, raises_exactly
from txtoken.errors import WptReplayed
from txtoken.replay_redis import RedisReplayStore
from txtoken.wimse import CallerVerifier, WitVerifier, WptVerifier, create_wpt

from .conftest import TARGET, WORKLOAD, Workload


def _replicas(
    wit_verifier: WitVerifier, url: str, clock: FakeClock
) -> tuple[list[RedisReplayStore], list[CallerVerifier]]:
    prefix = f"test:{uuid.uuid4().hex}:"
    stores = [RedisReplayStore(url, prefix=prefix) for _ in range(2)]
    return stores, [CallerVerifier(wit_verifier, WptVerifier(replay_store=s, clock=clock)) for s in stores]


def test_a_wpt_accepted_by_one_replica_is_a_replay_at_the_other(
    redis_server: RedisServer, wit_verifier: WitVerifier, workload: Workload, clock: FakeClock
) -> None:
    stores, (first, second) = _replicas(wit_verifier, redis_server.url, clock)
    wpt = create_wpt(workload.key, wit=workload.wit, audience=TARGET, now=clock.now)
    assert first.verify(wit=workload.wit, wpt=wpt, audience=TARGET).workload == WORKLOAD
    raises_exactly(WptReplayed, "wpt_replayed", lambda: second.verify(wit=workload.wit, wpt=wpt, audience=TARGET))
    for store in stores:
        store.close()


@pytest.mark.anyio
async def test_asyncio_replicas_share_the_store_too(
    redis_server: RedisServer, wit_verifier: WitVerifier, workload: Workload, clock: FakeClock
) -> None:
    stores, (first, second) = _replicas(wit_verifier, redis_server.url, clock)
    wpt = create_wpt(workload.key, wit=workload.wit, audience=TARGET, now=clock.now)
    assert (await first.averify(wit=workload.wit, wpt=wpt, audience=TARGET)).workload == WORKLOAD
    with pytest.raises(WptReplayed):
        await second.averify(wit=workload.wit, wpt=wpt, audience=TARGET)
    for store in stores:
        await store.aclose()
