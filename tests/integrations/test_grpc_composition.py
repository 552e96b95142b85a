"""gRPC: streams cancelled mid-way, handler aborts with trailing metadata, and composition with other interceptors."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import grpc
import pytest

from txtoken import current_transaction, use_transaction
from txtoken.errors import NoTransaction
from txtoken.policy import Policy, Rule
from txtoken_grpc import (
    AioTxnTokenServerInterceptor,
    TxnTokenClientInterceptor,
    TxnTokenServerInterceptor,
    aio_client_interceptors,
)

from .conftest import Issuer
from .grpc_services import CLIENT_STREAM, UNARY, ServerKind, call_all_aio, decode, encode, running_server

Handler = Any  # grpc.RpcMethodHandler, not subscriptable at runtime


def current_txn_id() -> str | None:
    txn = current_transaction()
    return txn.txn if txn else None


# -- a stream cancelled mid-way -----------------------------------------------------------------------------------


class AioStreamProbe(grpc.aio.ServerInterceptor):
    """Outside the txtoken interceptor: after the wrapped stream is closed, records the transaction it sees."""

    def __init__(self) -> None:
        self.after_close: list[str | None] = []
        self.done = asyncio.Event()

    async def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Handler:
        handler = await continuation(details)
        inner = handler.unary_stream

        async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
            responses = inner(request, context)
            try:
                async for response in responses:
                    yield response
            finally:
                await responses.aclose()
                self.after_close.append(current_txn_id())
                self.done.set()

        return grpc.unary_stream_rpc_method_handler(
            behavior, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


class SyncStreamProbe(grpc.ServerInterceptor):
    def __init__(self) -> None:
        self.after_close: list[str | None] = []
        self.done = threading.Event()

    def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Handler:
        handler = continuation(details)
        inner = handler.unary_stream

        def behavior(request: Any, context: Any) -> Iterator[Any]:
            responses = inner(request, context)
            try:
                yield from responses
            finally:
                responses.close()
                self.after_close.append(current_txn_id())
                self.done.set()

        return grpc.unary_stream_rpc_method_handler(
            behavior, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sync", "aio"])
async def test_stream_cancelled_mid_way_resets_the_transaction(issuer: Issuer, kind: ServerKind) -> None:
    cleanup_saw: list[str | None] = []

    def endless(request: Any, context: Any) -> Iterator[Any]:
        try:
            while True:
                time.sleep(0.005)
                yield {"txn": current_txn_id()}
        finally:
            cleanup_saw.append(current_txn_id())

    async def aendless(request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            while True:
                await asyncio.sleep(0.005)
                yield {"txn": current_txn_id()}
        finally:
            cleanup_saw.append(current_txn_id())

    behavior = endless if kind == "sync" else aendless
    handler = grpc.method_handlers_generic_handler(
        "test.Endless",
        {
            "Watch": grpc.unary_stream_rpc_method_handler(
                behavior, request_deserializer=decode, response_serializer=encode
            )
        },
    )
    probe: AioStreamProbe | SyncStreamProbe
    if kind == "sync":
        probe = SyncStreamProbe()
        interceptors: list[Any] = [probe, TxnTokenServerInterceptor(issuer.verifier())]
    else:
        probe = AioStreamProbe()
        interceptors = [probe, AioTxnTokenServerInterceptor(issuer.verifier())]
    txn = issuer.verified()
    async with (
        running_server(kind, interceptors, [handler]) as target,
        grpc.aio.insecure_channel(target, interceptors=aio_client_interceptors()) as channel,
    ):
        with use_transaction(txn):
            call = channel.unary_stream("/test.Endless/Watch", request_serializer=encode, response_deserializer=decode)(
                {}
            )
        received = [await call.read(), await call.read()]
        call.cancel()
        with anyio.fail_after(5):
            if isinstance(probe, AioStreamProbe):
                await probe.done.wait()
            else:
                await anyio.to_thread.run_sync(probe.done.wait)
    assert received == [{"txn": txn.txn}, {"txn": txn.txn}]
    assert cleanup_saw == [txn.txn]  # the handler's own cleanup still ran inside the transaction
    assert probe.after_close == [None]  # and nothing was left set outside it


# -- a handler's own abort, with trailing metadata, passes through ------------------------------------------------


def abort_handler(kind: ServerKind) -> grpc.GenericRpcHandler:
    trailing = (("reason", "out-of-stock"),)

    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        assert current_transaction() is not None
        context.set_trailing_metadata(trailing)
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no stock")

    def refuse_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        yield {"first": True}
        refuse(request, context)

    async def arefuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        assert current_transaction() is not None
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no stock", trailing)

    async def arefuse_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        yield {"first": True}
        await arefuse(request, context)

    unary, stream = (refuse, refuse_stream) if kind == "sync" else (arefuse, arefuse_stream)
    kw: dict[str, Any] = {"request_deserializer": decode, "response_serializer": encode}
    return grpc.method_handlers_generic_handler(
        "test.Refuse",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary, **kw),
            "Stream": grpc.unary_stream_rpc_method_handler(stream, **kw),
        },
    )


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sync", "aio"])
async def test_handler_abort_with_trailing_metadata_reaches_the_client(issuer: Issuer, kind: ServerKind) -> None:
    ic = (
        TxnTokenServerInterceptor(issuer.verifier())
        if kind == "sync"
        else AioTxnTokenServerInterceptor(issuer.verifier())
    )
    kw: dict[str, Any] = {"request_serializer": encode, "response_deserializer": decode}
    async with (
        running_server(kind, [ic], [abort_handler(kind)]) as target,
        grpc.aio.insecure_channel(target, interceptors=aio_client_interceptors()) as channel,
    ):
        with use_transaction(issuer.verified()):
            with pytest.raises(grpc.aio.AioRpcError) as unary:
                await channel.unary_unary("/test.Refuse/Unary", **kw)({}, timeout=10)
            call = channel.unary_stream("/test.Refuse/Stream", **kw)({}, timeout=10)
            assert await call.read() == {"first": True}
            with pytest.raises(grpc.aio.AioRpcError) as stream:
                await call.read()
    for error in (unary.value, stream.value):
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error.details() == "no stock"
        assert ("reason", "out-of-stock") in tuple(error.trailing_metadata() or ())


# -- composition with another interceptor, in either order ----------------------------------------------------------


class SyncLogging(grpc.ServerInterceptor):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Handler:
        handler = continuation(details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        inner = handler.unary_unary

        def behavior(request: Any, context: Any) -> Any:
            self.seen.append((details.method, current_txn_id()))
            return inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            behavior, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


class AioLogging(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    async def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Handler:
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        inner = handler.unary_unary

        async def behavior(request: Any, context: Any) -> Any:
            self.seen.append((details.method, current_txn_id()))
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            behavior, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sync", "aio"])
@pytest.mark.parametrize("logging_outside", [True, False])
async def test_server_interceptor_composes_with_a_logging_interceptor(
    issuer: Issuer, kind: ServerKind, logging_outside: bool
) -> None:
    logging_ic = SyncLogging() if kind == "sync" else AioLogging()
    ours = (
        TxnTokenServerInterceptor(issuer.verifier())
        if kind == "sync"
        else AioTxnTokenServerInterceptor(issuer.verifier())
    )
    interceptors = [logging_ic, ours] if logging_outside else [ours, logging_ic]
    txn = issuer.verified()
    async with running_server(kind, interceptors) as target:
        with use_transaction(txn):
            results = await call_all_aio(target)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call_all_aio(target, aio_client_interceptors(required=False))
    assert all(m["txn"] == txn.txn for messages in results.values() for m in messages)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Outside, the logging interceptor runs before the transaction is set, and also for the refused call.
    expected = [(UNARY, None), (UNARY, None)] if logging_outside else [(UNARY, txn.txn)]
    assert logging_ic.seen == expected


class SyncRequestId(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor):
    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(details._replace(metadata=[*(details.metadata or ()), ("x-request-id", "r1")]), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, request_iterator: Any) -> Any:
        return continuation(
            details._replace(metadata=[*(details.metadata or ()), ("x-request-id", "r1")]), request_iterator
        )


class AioRequestId(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        metadata = grpc.aio.Metadata.from_tuple(tuple(details.metadata or ()))
        metadata.add("x-request-id", "r1")
        return await continuation(details._replace(metadata=metadata), request)


def metadata_keys_handler() -> grpc.GenericRpcHandler:
    async def keys(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return {"keys": sorted(k for k, _ in context.invocation_metadata() or ()), "txn": current_txn_id()}

    return grpc.method_handlers_generic_handler(
        "test.Meta",
        {"Keys": grpc.unary_unary_rpc_method_handler(keys, request_deserializer=decode, response_serializer=encode)},
    )


@pytest.mark.anyio
@pytest.mark.parametrize("ours_first", [True, False])
async def test_client_interceptors_compose_with_another_interceptor(issuer: Issuer, ours_first: bool) -> None:
    txn = issuer.verified()
    kw: dict[str, Any] = {"request_serializer": encode, "response_deserializer": decode}
    aio_ours = aio_client_interceptors()
    aio_chain: list[Any] = [*aio_ours, AioRequestId()] if ours_first else [AioRequestId(), *aio_ours]
    sync_chain: list[Any] = [TxnTokenClientInterceptor(), SyncRequestId()]
    if not ours_first:
        sync_chain.reverse()

    def sync_call(target: str) -> Any:
        with grpc.insecure_channel(target) as channel:
            return grpc.intercept_channel(channel, *sync_chain).unary_unary("/test.Meta/Keys", **kw)({}, timeout=10)

    server_ic = AioTxnTokenServerInterceptor(issuer.verifier())
    async with running_server("aio", [server_ic], [metadata_keys_handler()]) as target:
        with use_transaction(txn):
            async with grpc.aio.insecure_channel(target, interceptors=aio_chain) as channel:
                aio_seen = await channel.unary_unary("/test.Meta/Keys", **kw)({}, timeout=10)
            sync_seen = await anyio.to_thread.run_sync(sync_call, target)
    for seen in (aio_seen, sync_seen):
        assert seen["txn"] == txn.txn
        assert {"txn-token", "x-request-id"} <= set(seen["keys"])


# -- reading requests with context.read() cannot bypass binding ---------------------------------------------------


@pytest.mark.anyio
async def test_aio_binding_also_checks_messages_read_from_the_context(issuer: Issuer) -> None:
    async def count(request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        messages = []
        while (message := await context.read()) is not grpc.aio.EOF:
            messages.append(message)
        return {"echo": messages, "txn": current_txn_id()}

    handler = grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "ClientStream": grpc.stream_unary_rpc_method_handler(
                count, request_deserializer=decode, response_serializer=encode
            )
        },
    )
    policy = Policy([Rule(CLIENT_STREAM, bind={"message.symbol": "symbol"})])
    kw: dict[str, Any] = {"request_serializer": encode, "response_deserializer": decode}
    async with (
        running_server("aio", [AioTxnTokenServerInterceptor(issuer.verifier(), policy=policy)], [handler]) as target,
        grpc.aio.insecure_channel(target, interceptors=aio_client_interceptors()) as channel,
    ):
        with use_transaction(issuer.verified()):
            ok = await channel.stream_unary(CLIENT_STREAM, **kw)(iter([{"symbol": "MSFT"}]), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await channel.stream_unary(CLIENT_STREAM, **kw)(iter([{"symbol": "MSFT"}, {"symbol": "TSLA"}]))
    assert ok["echo"] == [{"symbol": "MSFT"}]
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (refused.value.details() or "").startswith("binding_mismatch")


@pytest.mark.anyio
async def test_client_interceptors_replace_a_txn_token_entry_the_caller_set(issuer: Issuer) -> None:
    """The ``txn-token`` entry is the interceptors' alone (as the header is TxnTokenAuth's): one the caller set is
    replaced by the current transaction's token, or dropped when there is none to send; never two entries."""
    current, explicit = issuer.verified(), issuer.verified()
    kw: dict[str, Any] = {"request_serializer": encode, "response_deserializer": decode}
    metadata = (("txn-token", explicit.token),)

    def sync_call(target: str) -> Any:
        with grpc.insecure_channel(target) as channel:
            stub = grpc.intercept_channel(channel, TxnTokenClientInterceptor())
            return stub.unary_unary("/test.Meta/Keys", **kw)({}, metadata=metadata, timeout=10)

    server_ic = AioTxnTokenServerInterceptor(issuer.verifier())
    async with running_server("aio", [server_ic], [metadata_keys_handler()]) as target:
        async with grpc.aio.insecure_channel(target, interceptors=aio_client_interceptors()) as channel:
            call = channel.unary_unary("/test.Meta/Keys", **kw)
            with use_transaction(current):
                inside = await call({}, metadata=metadata, timeout=10)
            with pytest.raises(NoTransaction):
                await call({}, metadata=metadata, timeout=10)
        async with grpc.aio.insecure_channel(target, interceptors=aio_client_interceptors(required=False)) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as dropped:
                await channel.unary_unary("/test.Meta/Keys", **kw)({}, metadata=metadata, timeout=10)
        with use_transaction(current):
            sync_seen = await anyio.to_thread.run_sync(sync_call, target)
        with pytest.raises(NoTransaction):
            await anyio.to_thread.run_sync(sync_call, target)
    assert inside["txn"] == sync_seen["txn"] == current.txn != explicit.txn
    assert inside["keys"].count("txn-token") == sync_seen["keys"].count("txn-token") == 1
    assert dropped.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (dropped.value.details() or "").startswith("token_missing")
