"""A gRPC test service without protoc: JSON-bytes messages, every RPC kind, handlers that report what they saw.

Each response carries the ``txn`` (and ``tctx``) of the current transaction at the moment the handler produced it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import grpc

from txtoken import current_transaction
from txtoken_grpc import TxnTokenClientInterceptor, aio_client_interceptors

SERVICE = "test.Echo"
UNARY = f"/{SERVICE}/Unary"
SERVER_STREAM = f"/{SERVICE}/ServerStream"
CLIENT_STREAM = f"/{SERVICE}/ClientStream"
BIDI = f"/{SERVICE}/Bidi"

ServerKind = Literal["sync", "aio", "aio-sync-handlers"]
Message = dict[str, Any]


def encode(message: Any) -> bytes:
    return json.dumps(message).encode()


def decode(data: bytes) -> Any:
    return json.loads(data)


def seen() -> Message:
    txn = current_transaction()
    return {"txn": txn.txn if txn else None, "tctx": dict(txn.tctx) if txn else None}


# -- handlers ---------------------------------------------------------------------------------------------------


def unary(request: Message, context: grpc.ServicerContext) -> Message:
    return {**seen(), "echo": request}


def server_stream(request: Message, context: grpc.ServicerContext) -> Iterator[Message]:
    for i in range(request.get("n", 3)):
        yield {**seen(), "i": i}


def client_stream(requests: Iterator[Message], context: grpc.ServicerContext) -> Message:
    return {**seen(), "echo": list(requests)}


def bidi(requests: Iterator[Message], context: grpc.ServicerContext) -> Iterator[Message]:
    for request in requests:
        yield {**seen(), "echo": request}


async def aunary(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
    await anyio.sleep(0)
    return {**seen(), "echo": request}


async def aserver_stream(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Message]:
    for i in range(request.get("n", 3)):
        await anyio.sleep(0)
        yield {**seen(), "i": i}


async def aclient_stream(requests: AsyncIterator[Message], context: grpc.aio.ServicerContext[Any, Any]) -> Message:
    return {**seen(), "echo": [request async for request in requests]}


async def abidi(
    requests: AsyncIterator[Message], context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[Message]:
    async for request in requests:
        await anyio.sleep(0)
        yield {**seen(), "echo": request}


def echo_handler(*, asynchronous: bool) -> grpc.GenericRpcHandler:
    behaviors: Sequence[Callable[..., Any]] = (
        (aunary, aserver_stream, aclient_stream, abidi) if asynchronous else (unary, server_stream, client_stream, bidi)
    )
    factories = (
        grpc.unary_unary_rpc_method_handler,
        grpc.unary_stream_rpc_method_handler,
        grpc.stream_unary_rpc_method_handler,
        grpc.stream_stream_rpc_method_handler,
    )
    names = ("Unary", "ServerStream", "ClientStream", "Bidi")
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            name: factory(behavior, request_deserializer=decode, response_serializer=encode)
            for name, factory, behavior in zip(names, factories, behaviors, strict=True)
        },
    )


# -- servers ----------------------------------------------------------------------------------------------------


@asynccontextmanager
async def running_server(
    kind: ServerKind,
    interceptors: Sequence[Any],
    handlers: Iterable[grpc.GenericRpcHandler] | None = None,
) -> AsyncIterator[str]:
    """A real gRPC server on a loopback port; yields its target. ``aio-sync-handlers``: sync handlers, aio server."""
    if handlers is None:
        handlers = [echo_handler(asynchronous=kind == "aio")]
    if kind == "sync":
        server = grpc.server(
            ThreadPoolExecutor(16, thread_name_prefix="grpc-handlers"), interceptors=list(interceptors)
        )
        server.add_generic_rpc_handlers(tuple(handlers))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            yield f"127.0.0.1:{port}"
        finally:
            server.stop(None)
        return
    pool = ThreadPoolExecutor(max_workers=16) if kind == "aio-sync-handlers" else None
    aio_server = grpc.aio.server(interceptors=interceptors, migration_thread_pool=pool)
    aio_server.add_generic_rpc_handlers(tuple(handlers))
    port = aio_server.add_insecure_port("127.0.0.1:0")
    await aio_server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await aio_server.stop(None)
        if pool is not None:
            # Let grpc's bridge threads hand their last message to this loop before it closes: a bridge thread
            # still running when the loop is gone leaves an un-awaited Queue.put behind.
            with anyio.move_on_after(5):
                await anyio.to_thread.run_sync(pool.shutdown, abandon_on_cancel=True)


# -- clients: every RPC kind, returning what the server saw -------------------------------------------------------


def call_all_sync(target: str, interceptors: Sequence[Any] | None = None) -> dict[str, list[Message]]:
    channel = grpc.insecure_channel(target)
    try:
        intercepted = grpc.intercept_channel(channel, *(interceptors or [TxnTokenClientInterceptor()]))
        kw: dict[str, Any] = {"request_serializer": encode, "response_deserializer": decode}
        return {
            "unary": [intercepted.unary_unary(UNARY, **kw)({"x": 1}, timeout=10)],
            "server_stream": list(intercepted.unary_stream(SERVER_STREAM, **kw)({"n": 3}, timeout=10)),
            "client_stream": [intercepted.stream_unary(CLIENT_STREAM, **kw)(iter([{"x": 1}, {"x": 2}]), timeout=10)],
            "bidi": list(intercepted.stream_stream(BIDI, **kw)(iter([{"x": 1}, {"x": 2}]), timeout=10)),
        }
    finally:
        channel.close()


async def call_all_aio(target: str, interceptors: Sequence[Any] | None = None) -> dict[str, list[Message]]:
    async with grpc.aio.insecure_channel(target, interceptors=interceptors or aio_client_interceptors()) as channel:
        kw: dict[str, Any] = {"request_serializer": encode, "response_deserializer": decode}

        async def requests() -> AsyncIterator[Message]:
            for x in (1, 2):
                yield {"x": x}

        return {
            "unary": [await channel.unary_unary(UNARY, **kw)({"x": 1}, timeout=10)],
            "server_stream": [m async for m in channel.unary_stream(SERVER_STREAM, **kw)({"n": 3}, timeout=10)],
            "client_stream": [await channel.stream_unary(CLIENT_STREAM, **kw)(requests(), timeout=10)],
            "bidi": [m async for m in channel.stream_stream(BIDI, **kw)(requests(), timeout=10)],
        }
