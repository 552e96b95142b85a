"""Isolation under concurrency: 500 concurrent requests, each with its own token, each handler sees its own txn."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import anyio
import grpc
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from txtoken import current_transaction, use_transaction
from txtoken_asgi import TxnTokenMiddleware
from txtoken_grpc import AioTxnTokenServerInterceptor, TxnTokenServerInterceptor, aio_client_interceptors

from ..conftest import RunningServer
from .conftest import Issuer
from .grpc_services import ServerKind, decode, encode, running_server
from .raw_http import get_json

N = 500


def txn_id() -> str | None:
    txn = current_transaction()
    return txn.txn if txn else None


async def async_handler(request: Request) -> JSONResponse:
    before = txn_id()
    await asyncio.sleep(random.random() / 50)  # interleave with the other requests
    return JSONResponse({"before": before, "after": txn_id(), "state": request.state.txn.txn})


def thread_handler(request: Request) -> JSONResponse:
    before = txn_id()
    time.sleep(random.random() / 500)
    return JSONResponse({"before": before, "after": txn_id(), "state": request.state.txn.txn})


@pytest.mark.anyio
async def test_500_concurrent_http_requests_each_see_their_own_transaction(
    serve: Callable[..., RunningServer], issuer: Issuer
) -> None:
    app = Starlette(
        routes=[Route("/async", async_handler), Route("/thread", thread_handler)],
        middleware=[Middleware(TxnTokenMiddleware, verifier=issuer.verifier())],
    )
    server = serve(app, backlog=2 * N)
    txns = [issuer.verified(sub=f"user-{i}") for i in range(N)]

    async def one(i: int) -> Any:
        status, seen = await get_json(server.port, "/async" if i % 2 else "/thread", {"Txn-Token": txns[i].token})
        assert status == 200
        return seen

    with anyio.fail_after(60):
        results = await asyncio.gather(*(one(i) for i in range(N)))
    for txn, seen in zip(txns, results, strict=True):
        assert seen == {"before": txn.txn, "after": txn.txn, "state": txn.txn}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sync", "aio"])
async def test_500_concurrent_grpc_calls_each_see_their_own_transaction(issuer: Issuer, kind: ServerKind) -> None:
    def handle(request: Any, context: Any) -> Any:
        before = txn_id()
        time.sleep(random.random() / 500)
        return {"before": before, "after": txn_id()}

    async def ahandle(request: Any, context: Any) -> Any:
        before = txn_id()
        await asyncio.sleep(random.random() / 50)
        return {"before": before, "after": txn_id()}

    behavior = handle if kind == "sync" else ahandle
    handler = grpc.method_handlers_generic_handler(
        "test.Who", {"Am": grpc.unary_unary_rpc_method_handler(behavior, decode, encode)}
    )
    verifier = issuer.verifier()
    interceptor: Any = TxnTokenServerInterceptor(verifier) if kind == "sync" else AioTxnTokenServerInterceptor(verifier)
    txns = [issuer.verified(sub=f"user-{i}") for i in range(N)]
    async with (
        running_server(kind, [interceptor], [handler]) as target,
        grpc.aio.insecure_channel(target, interceptors=aio_client_interceptors()) as channel,
    ):
        who = channel.unary_unary("/test.Who/Am", request_serializer=encode, response_deserializer=decode)

        async def one(i: int) -> Any:
            with use_transaction(txns[i]):
                call = who({}, timeout=30)  # the interceptor reads the transaction when the call is made
            return await call

        with anyio.fail_after(60):
            results = await asyncio.gather(*(one(i) for i in range(N)))
    for txn, seen in zip(txns, results, strict=True):
        assert seen == {"before": txn.txn, "after": txn.txn}
