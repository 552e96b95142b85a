"""The current transaction: a ContextVar set around a block and always reset, isolated per task and per thread."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from txtoken import SigningKey, VerifiedTxnToken, current_transaction, require_transaction, use_transaction
from txtoken.errors import NoTransaction

from .conftest import claims, raises_exactly, token, verifier


def _verified(key: SigningKey, txn: str) -> VerifiedTxnToken:
    return verifier(key).verify(token(key, payload=claims(txn=txn)))


def test_outside_a_transaction(es256: SigningKey) -> None:
    assert current_transaction() is None
    error = raises_exactly(NoTransaction, "no_transaction", require_transaction)
    # Met while serving a request (a handler on an exempt path), it means the request established no transaction.
    assert (error.http_status, error.grpc_status) == (401, "UNAUTHENTICATED")


def test_use_transaction_sets_and_resets(es256: SigningKey) -> None:
    txn = _verified(es256, "t-1")
    with use_transaction(txn) as entered:
        assert entered is txn
        assert current_transaction() is txn
        assert require_transaction() is txn
        assert require_transaction().txn == "t-1"
    assert current_transaction() is None


def test_use_transaction_resets_on_exception(es256: SigningKey) -> None:
    txn = _verified(es256, "t-1")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), use_transaction(txn):
        raise Boom
    assert current_transaction() is None


def test_nested_use_restores_the_outer_transaction(es256: SigningKey) -> None:
    outer, inner = _verified(es256, "outer"), _verified(es256, "inner")
    with use_transaction(outer):
        with use_transaction(inner):
            assert require_transaction() is inner
        assert require_transaction() is outer
        with pytest.raises(RuntimeError), use_transaction(inner):
            raise RuntimeError
        assert require_transaction() is outer
        with use_transaction(None):  # explicitly no transaction inside
            assert current_transaction() is None
            raises_exactly(NoTransaction, "no_transaction", require_transaction)
        assert require_transaction() is outer
    assert current_transaction() is None


@pytest.mark.anyio
async def test_isolation_across_asyncio_tasks(es256: SigningKey) -> None:
    txns = [_verified(es256, f"task-{i}") for i in range(20)]
    both_inside = asyncio.Event()
    inside = 0

    async def handler(txn: VerifiedTxnToken) -> tuple[str, str]:
        nonlocal inside
        with use_transaction(txn):
            inside += 1
            if inside == len(txns):
                both_inside.set()
            await both_inside.wait()  # every task is inside its own block at the same time
            await asyncio.sleep(0)
            seen = require_transaction().txn
        return txn.txn, seen

    with use_transaction(_verified(es256, "caller")):
        results = await asyncio.gather(*(handler(t) for t in txns))
        assert require_transaction().txn == "caller"  # tasks ran in copies of this context
    assert all(expected == seen for expected, seen in results)
    assert current_transaction() is None


def test_isolation_across_threads(es256: SigningKey) -> None:
    txns = [_verified(es256, f"thread-{i}") for i in range(8)]
    barrier = threading.Barrier(len(txns))

    def worker(txn: VerifiedTxnToken) -> tuple[str | None, str, str | None]:
        before = current_transaction()
        with use_transaction(txn):
            barrier.wait()  # all threads inside their blocks at once
            seen = require_transaction().txn
        after = current_transaction()
        return (before.txn if before else None), seen, (after.txn if after else None)

    with use_transaction(_verified(es256, "main")), ThreadPoolExecutor(max_workers=len(txns)) as pool:
        results = list(pool.map(worker, txns))
        assert require_transaction().txn == "main"
    assert results == [(None, t.txn, None) for t in txns]  # a new thread does not inherit the caller's transaction


def test_context_copy_carries_the_transaction_to_a_thread(es256: SigningKey) -> None:
    """Propagating into a thread is explicit: run the work in a copy of the caller's context."""
    txn = _verified(es256, "copied")
    with use_transaction(txn):
        ctx = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1) as pool:
        seen = pool.submit(ctx.run, lambda: require_transaction().txn).result()
    assert seen == "copied"
    assert current_transaction() is None
