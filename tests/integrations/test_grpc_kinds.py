"""All four RPC kinds on sync and aio servers (async and sync handlers) through sync and aio clients."""

from __future__ import annotations

from typing import Any

import anyio
import grpc
import pytest

from txtoken import use_transaction
from txtoken.errors import NoTransaction
from txtoken_grpc import (
    AioTxnTokenServerInterceptor,
    TxnTokenClientInterceptor,
    TxnTokenServerInterceptor,
    aio_client_interceptors,
)

from .conftest import DEFAULT_TCTX, Issuer
from .grpc_services import ServerKind, call_all_aio, call_all_sync, running_server

SERVER_KINDS: list[ServerKind] = ["sync", "aio", "aio-sync-handlers"]


def server_interceptor(kind: ServerKind, issuer: Issuer) -> Any:
    if kind == "sync":
        return TxnTokenServerInterceptor(issuer.verifier())
    return AioTxnTokenServerInterceptor(issuer.verifier())


@pytest.mark.anyio
@pytest.mark.parametrize("server_kind", SERVER_KINDS)
@pytest.mark.parametrize("client_kind", ["sync", "aio"])
async def test_every_rpc_kind_carries_and_exposes_the_transaction(
    issuer: Issuer, server_kind: ServerKind, client_kind: str
) -> None:
    txn = issuer.verified(tctx={**DEFAULT_TCTX, "hop": client_kind})
    async with running_server(server_kind, [server_interceptor(server_kind, issuer)]) as target:
        with use_transaction(txn):
            if client_kind == "sync":
                results = await anyio.to_thread.run_sync(call_all_sync, target)
            else:
                results = await call_all_aio(target)
    assert [len(results[k]) for k in ("unary", "server_stream", "client_stream", "bidi")] == [1, 3, 1, 2]
    for messages in results.values():
        for message in messages:
            assert message["txn"] == txn.txn
            assert message["tctx"] == {**DEFAULT_TCTX, "hop": client_kind}
    assert results["client_stream"][0]["echo"] == [{"x": 1}, {"x": 2}]
    assert [m["echo"] for m in results["bidi"]] == [{"x": 1}, {"x": 2}]


@pytest.mark.anyio
async def test_clients_refuse_to_call_outside_a_transaction_unless_told_to_send_nothing(issuer: Issuer) -> None:
    async with running_server("aio", [AioTxnTokenServerInterceptor(issuer.verifier())]) as target:
        with pytest.raises(NoTransaction):
            await call_all_aio(target)
        with pytest.raises(NoTransaction):
            await anyio.to_thread.run_sync(call_all_sync, target)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call_all_aio(target, aio_client_interceptors(required=False))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert (refused.value.details() or "").startswith("token_missing")
        with pytest.raises(grpc.RpcError) as refused_sync:
            await anyio.to_thread.run_sync(call_all_sync, target, [TxnTokenClientInterceptor(required=False)])
        assert refused_sync.value.code() == grpc.StatusCode.UNAUTHENTICATED
