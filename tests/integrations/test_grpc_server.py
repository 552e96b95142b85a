"""gRPC server interceptors: every refusal, request binding on messages, audit mode, exemptions, where it verifies."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import pytest

from txtoken import TxnTokenVerifier, VerifiedTxnToken
from txtoken.policy import Policy, Rule
from txtoken_grpc import AioTxnTokenServerInterceptor, TxnTokenServerInterceptor

from .conftest import INVALID_TOKENS, Issuer, invalid_token
from .grpc_services import (
    BIDI,
    CLIENT_STREAM,
    SERVER_STREAM,
    SERVICE,
    UNARY,
    ServerKind,
    decode,
    encode,
    running_server,
)

SERVER_KINDS: list[ServerKind] = ["sync", "aio"]
Metadata = Sequence[tuple[str, str]]


def interceptor(kind: ServerKind, verifier: TxnTokenVerifier, **options: Any) -> Any:
    cls = TxnTokenServerInterceptor if kind == "sync" else AioTxnTokenServerInterceptor
    return cls(verifier, **options)


async def call(target: str, method: str, request: Any, metadata: Metadata) -> list[Any]:
    """One call of any kind with explicit metadata (no client interceptor); a stream's requests are a list."""
    kw: dict[str, Any] = {"request_serializer": encode, "response_deserializer": decode}
    async with grpc.aio.insecure_channel(target) as channel:
        if method == UNARY:
            return [await channel.unary_unary(method, **kw)(request, metadata=metadata, timeout=10)]
        if method == SERVER_STREAM:
            return [m async for m in channel.unary_stream(method, **kw)(request, metadata=metadata, timeout=10)]
        if method == CLIENT_STREAM:
            return [await channel.stream_unary(method, **kw)(iter(request), metadata=metadata, timeout=10)]
        return [m async for m in channel.stream_stream(method, **kw)(iter(request), metadata=metadata, timeout=10)]


async def refusal(target: str, method: str, request: Any, metadata: Metadata) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(target, method, request, metadata)
    return refused.value


def assert_refused(error: grpc.aio.AioRpcError, status: grpc.StatusCode, code: str, token: str | None) -> None:
    assert error.code() == status
    details = error.details() or ""
    assert details.startswith(f"{code}: ")
    assert ("txtoken-error", code) in tuple(error.trailing_metadata() or ())
    if token:
        assert token not in details


@pytest.mark.anyio
@pytest.mark.parametrize("kind", SERVER_KINDS)
@pytest.mark.parametrize(("method", "request_"), [(UNARY, {}), (SERVER_STREAM, {"n": 2}), (BIDI, [])])
@pytest.mark.parametrize(
    ("token_kind", "code"), [*INVALID_TOKENS, ("missing", "token_missing"), ("twice", "token_duplicated")]
)
async def test_each_invalid_token_is_unauthenticated(
    issuer: Issuer, kind: ServerKind, method: str, request_: Any, token_kind: str, code: str
) -> None:
    token: str | None
    if token_kind == "missing":
        token, metadata = None, []
    elif token_kind == "twice":
        token = issuer.mint()
        metadata = [("txn-token", token), ("txn-token", token)]
    else:
        token = invalid_token(issuer, token_kind)
        metadata = [("txn-token", token)]
    async with running_server(kind, [interceptor(kind, issuer.verifier())]) as target:
        error = await refusal(target, method, request_, metadata)
    assert_refused(error, grpc.StatusCode.UNAUTHENTICATED, code, token)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_unreachable_keys_are_unavailable(issuer: Issuer, kind: ServerKind, keyless_verifier: Any) -> None:
    async with running_server(kind, [interceptor(kind, keyless_verifier)]) as target:
        error = await refusal(target, UNARY, {}, [("txn-token", issuer.mint())])
    assert_refused(error, grpc.StatusCode.UNAVAILABLE, "keys_unavailable", None)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_policy_refusal_is_permission_denied(issuer: Issuer, kind: ServerKind) -> None:
    policy = Policy([Rule(f"/{SERVICE}/*", scopes=["trade"]), Rule(UNARY, scopes=["admin"])])
    token = issuer.mint()
    async with running_server(kind, [interceptor(kind, issuer.verifier(), policy=policy)]) as target:
        error = await refusal(target, UNARY, {}, [("txn-token", token)])
        allowed = await call(target, SERVER_STREAM, {"n": 1}, [("txn-token", token)])
    assert_refused(error, grpc.StatusCode.PERMISSION_DENIED, "insufficient_scope", token)
    assert allowed[0]["txn"] == issuer.verifier().verify(token).txn


# -- request binding on messages ----------------------------------------------------------------------------------

BINDING = Policy([Rule(m, bind={"message.symbol": "symbol"}) for m in (UNARY, CLIENT_STREAM, BIDI)])


@pytest.mark.anyio
@pytest.mark.parametrize("kind", [*SERVER_KINDS, "aio-sync-handlers"])
@pytest.mark.parametrize(
    ("method", "good", "bad"),
    [
        (UNARY, {"symbol": "MSFT"}, {"symbol": "TSLA"}),
        (CLIENT_STREAM, [{"symbol": "MSFT"}], [{"symbol": "MSFT"}, {"symbol": "TSLA"}]),
        (BIDI, [{"symbol": "MSFT"}], [{"symbol": "MSFT"}, {"symbol": "TSLA"}]),
        (UNARY, {"symbol": "MSFT"}, {"ticker": "MSFT"}),  # the bound field is missing
    ],
)
async def test_request_binding_on_message_fields(
    issuer: Issuer, kind: ServerKind, method: str, good: Any, bad: Any
) -> None:
    token = issuer.mint()  # tctx.symbol == "MSFT"
    metadata = [("txn-token", token)]
    async with running_server(kind, [interceptor(kind, issuer.verifier(), policy=BINDING)]) as target:
        result = await call(target, method, good, metadata)
        assert [m["echo"] for m in result] == (good if method == BIDI else [good])
        error = await refusal(target, method, bad, metadata)
    assert_refused(error, grpc.StatusCode.PERMISSION_DENIED, "binding_mismatch", token)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sync", "aio-sync-handlers"])
async def test_a_sync_handler_that_catches_a_binding_refusal_is_refused_all_the_same(
    issuer: Issuer, kind: ServerKind
) -> None:
    """A sync handler meets the refusal as an exception from its request iterator; catching it changes nothing: no
    response it yields afterwards reaches the client, and the call ends with the refusal once the handler is done."""

    def stubborn_bidi(requests: Iterator[Any], context: Any) -> Iterator[Any]:
        try:
            for request in requests:
                yield {"echo": request}
        except Exception:
            yield {"echo": "after the refusal"}

    def stubborn_client_stream(requests: Iterator[Any], context: Any) -> Any:
        received: list[Any] = []
        try:
            received.extend(requests)
        except Exception:
            received.append("after the refusal")
        return {"echo": received}

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Bidi": grpc.stream_stream_rpc_method_handler(
                stubborn_bidi, request_deserializer=decode, response_serializer=encode
            ),
            "ClientStream": grpc.stream_unary_rpc_method_handler(
                stubborn_client_stream, request_deserializer=decode, response_serializer=encode
            ),
        },
    )
    token = issuer.mint()  # tctx.symbol == "MSFT"
    metadata = [("txn-token", token)]
    bad = [{"symbol": "MSFT"}, {"symbol": "TSLA"}]
    kw: dict[str, Any] = {"request_serializer": encode, "response_deserializer": decode}
    received: list[Any] = []
    async with running_server(kind, [interceptor(kind, issuer.verifier(), policy=BINDING)], [handler]) as target:
        async with grpc.aio.insecure_channel(target) as channel:
            responses = channel.stream_stream(BIDI, **kw)(iter(bad), metadata=metadata, timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as stream_refused:
                async for response in responses:
                    received.append(response)
        unary_refused = await refusal(target, CLIENT_STREAM, bad, metadata)
    assert received == [{"echo": {"symbol": "MSFT"}}]
    assert_refused(stream_refused.value, grpc.StatusCode.PERMISSION_DENIED, "binding_mismatch", token)
    assert_refused(unary_refused, grpc.StatusCode.PERMISSION_DENIED, "binding_mismatch", token)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_binding_extractor_reads_any_message_type(issuer: Issuer, kind: ServerKind) -> None:
    """Raw-bytes messages ("symbol=MSFT;qty=100"), read by a binding extractor the service supplies."""

    def fields(message: bytes) -> dict[str, str]:
        return dict(item.split("=", 1) for item in message.decode().split(";"))

    def order(request: bytes, context: Any) -> bytes:
        return b"ok " + request

    async def aorder(request: bytes, context: Any) -> bytes:
        return b"ok " + request

    behavior = order if kind == "sync" else aorder
    handler = grpc.method_handlers_generic_handler("raw.Orders", {"Buy": grpc.unary_unary_rpc_method_handler(behavior)})
    policy = Policy([Rule("/raw.Orders/Buy", bind={"message.symbol": "symbol", "message.qty": "quantity"})])
    ic = interceptor(kind, issuer.verifier(), policy=policy, binding_extractor=fields)
    metadata = [("txn-token", issuer.mint())]
    async with running_server(kind, [ic], [handler]) as target, grpc.aio.insecure_channel(target) as channel:
        buy: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/raw.Orders/Buy")
        assert await buy(b"symbol=MSFT;qty=100", metadata=metadata, timeout=10) == b"ok symbol=MSFT;qty=100"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await buy(b"symbol=MSFT;qty=1000", metadata=metadata, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as unreadable:
            await buy(b"garbage", metadata=metadata, timeout=10)
    assert_refused(refused.value, grpc.StatusCode.PERMISSION_DENIED, "binding_mismatch", None)
    assert_refused(unreadable.value, grpc.StatusCode.PERMISSION_DENIED, "binding_mismatch", None)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_audit_mode_lets_calls_through_and_logs_without_the_token(
    issuer: Issuer, kind: ServerKind, caplog: pytest.LogCaptureFixture
) -> None:
    policy = Policy([Rule(UNARY, scopes=["admin"], bind={"message.symbol": "symbol"})], mode="audit")
    token = issuer.mint()
    with caplog.at_level(logging.DEBUG):
        async with running_server(kind, [interceptor(kind, issuer.verifier(), policy=policy)]) as target:
            result = await call(target, UNARY, {"symbol": "TSLA"}, [("txn-token", token)])
    assert result[0]["echo"] == {"symbol": "TSLA"}
    audits = [r.getMessage() for r in caplog.records if r.name == "txtoken.policy"]
    assert len(audits) == 2
    assert "insufficient_scope" in audits[0] and "binding_mismatch" in audits[1]
    assert not any(token in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_exempt_methods_need_no_token(issuer: Issuer, kind: ServerKind) -> None:
    async with running_server(kind, [interceptor(kind, issuer.verifier(), exempt_methods=[UNARY])]) as target:
        assert (await call(target, UNARY, {}, []))[0]["txn"] is None
        error = await refusal(target, SERVER_STREAM, {}, [])
    assert_refused(error, grpc.StatusCode.UNAUTHENTICATED, "token_missing", None)


@pytest.mark.anyio
async def test_sync_server_verifies_on_the_handler_pool_not_the_polling_thread(issuer: Issuer) -> None:
    threads: list[str] = []

    class RecordingVerifier(TxnTokenVerifier):
        def verify(self, token: str) -> VerifiedTxnToken:
            threads.append(threading.current_thread().name)
            return super().verify(token)

    verifier = RecordingVerifier(issuer.keys, trust_domain=issuer.minter.trust_domain)
    async with running_server("sync", [TxnTokenServerInterceptor(verifier)]) as target:
        for method, request in ((UNARY, {}), (SERVER_STREAM, {"n": 1}), (CLIENT_STREAM, [{}]), (BIDI, [{}])):
            await call(target, method, request, [("txn-token", issuer.mint())])
    assert len(threads) == 4 and all(name.startswith("grpc-handlers") for name in threads)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_no_token_in_any_log_line_or_details(
    issuer: Issuer, kind: ServerKind, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = [invalid_token(issuer, k) for k, _ in INVALID_TOKENS if k != "oversized"] + [issuer.mint()]
    policy = Policy([Rule(UNARY, bind={"message.symbol": "symbol"})])
    details = []
    with caplog.at_level(logging.DEBUG):
        async with running_server(kind, [interceptor(kind, issuer.verifier(), policy=policy)]) as target:
            for token in tokens:
                error = await refusal(target, UNARY, {"symbol": "TSLA"}, [("txn-token", token)])
                details.append((error.details() or "") + repr(error.trailing_metadata()))
    logged = [r.getMessage() for r in caplog.records]
    assert sum("refused a Txn-Token" in line for line in logged) == len(tokens)
    for token in tokens:
        assert not any(token in line for line in logged + details)
