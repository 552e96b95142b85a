"""OpenTelemetry through real servers: verification spans and metrics from the ASGI middleware and the gRPC
interceptors, JWKS fetch spans, replay-store hits; never a token in an attribute, never ``txn`` in baggage."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
import httpx
import pytest
from opentelemetry import baggage, trace
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from txtoken import RemoteJwksKeySource, TxnTokenVerifier, telemetry
from txtoken.replay import MemoryReplayStore
from txtoken_asgi import TxnTokenMiddleware
from txtoken_grpc import AioTxnTokenServerInterceptor, TxnTokenServerInterceptor

from ..conftest import Captured, RunningServer, assert_no_secret_in
from .conftest import TRUST_DOMAIN, Issuer, closed_port
from .grpc_services import UNARY, ServerKind, decode, encode, running_server

Serve = Callable[..., RunningServer]


async def inside(request: Request) -> JSONResponse:
    """What the handler sees of OpenTelemetry's context."""
    return JSONResponse({"baggage": dict(baggage.get_all()), "txn": request.scope["txtoken"].txn})


def otel_app(verifier: TxnTokenVerifier) -> Starlette:
    return Starlette(routes=[Route("/inside", inside)], middleware=[Middleware(TxnTokenMiddleware, verifier=verifier)])


@pytest.mark.anyio
async def test_middleware_verification_spans_and_metrics(serve: Serve, issuer: Issuer, otel_capture: Captured) -> None:
    server = serve(otel_app(issuer.verifier()))
    good, expired, bad = issuer.mint(), issuer.expired(), issuer.bad_signature()
    async with httpx.AsyncClient(base_url=server.url) as client:
        ok = await client.get("/inside", headers={"Txn-Token": good})
        refused = [await client.get("/inside", headers={"Txn-Token": t}) for t in (expired, bad)]
        missing = await client.get("/inside")
    assert missing.status_code == 401
    assert ok.status_code == 200
    assert ok.json()["baggage"] == {}  # txn never travels as baggage
    assert [r.status_code for r in refused] == [401, 401]

    verified, *failures = otel_capture.spans("txtoken.verify")
    assert verified.kind == SpanKind.INTERNAL
    assert verified.attributes["txtoken.txn"] == ok.json()["txn"]
    assert verified.attributes["txtoken.token.kid"] == issuer.keys.active.kid
    assert verified.status.status_code == StatusCode.UNSET
    assert [s.attributes["error.type"] for s in failures] == ["token_expired", "signature_invalid"]
    for span in failures:
        assert span.status.status_code == StatusCode.ERROR
        assert "txtoken.txn" not in span.attributes  # only once verified
        assert not span.events  # no exception text recorded
    assert_no_secret_in(otel_capture.spans(), [good, expired, bad])

    assert otel_capture.counts("txtoken.verifications") == {
        (("txtoken.outcome", "success"),): 1,
        (("error.type", "token_expired"), ("txtoken.outcome", "failure")): 1,
        (("error.type", "signature_invalid"), ("txtoken.outcome", "failure")): 1,
    }
    refusals = otel_capture.counts("txtoken.refusals")
    assert refusals == {
        (("error.type", code), ("txtoken.carrier", "http")): 1
        for code in ("token_expired", "signature_invalid", "token_missing")
    }  # a missing token never reaches the verifier, but it is a refusal
    durations = otel_capture.points("txtoken.verification.duration")
    assert sum(point.count for _, point in durations) == 3
    for attributes, _ in durations + otel_capture.points("txtoken.verifications"):
        assert set(attributes) <= {"txtoken.outcome", "error.type"}  # low cardinality: no txn, no sub


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sync", "aio"])
async def test_grpc_interceptor_verification_spans(
    issuer: Issuer, otel_capture: Captured, kind: ServerKind, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="txtoken.grpc")
    cls = TxnTokenServerInterceptor if kind == "sync" else AioTxnTokenServerInterceptor
    good, expired = issuer.mint(), issuer.expired()
    async with running_server(kind, [cls(issuer.verifier())]) as target, grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(UNARY, request_serializer=encode, response_deserializer=decode)
        await call({"n": 1}, metadata=(("txn-token", good),), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError):
            await call({"n": 1}, metadata=(("txn-token", expired),), timeout=10)
    verified, refused = otel_capture.spans("txtoken.verify")
    assert verified.attributes["txtoken.txn"] == issuer.verifier().verify(good).txn
    assert refused.attributes["error.type"] == "token_expired"
    assert "txtoken.txn" not in refused.attributes
    assert_no_secret_in([verified, refused], [good, expired])
    assert otel_capture.counts("txtoken.refusals") == {
        (("error.type", "token_expired"), ("txtoken.carrier", "grpc")): 1
    }
    (record,) = (r for r in caplog.records if r.name == "txtoken.grpc")
    fields = {name: record.__dict__[name] for name in ("method", "status", "code")}
    assert fields == {"method": UNARY, "status": "UNAUTHENTICATED", "code": "token_expired"}


@pytest.mark.anyio
async def test_jwks_fetch_spans_and_failures(serve: Serve, issuer: Issuer, otel_capture: Captured) -> None:
    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(issuer.keys.public_jwks())

    server = serve(Starlette(routes=[Route("/jwks", jwks)]))
    good = RemoteJwksKeySource(f"{server.url}/jwks", allow_http=True)
    down = RemoteJwksKeySource(f"http://127.0.0.1:{closed_port()}/jwks", allow_http=True, timeout=1.0)
    token = issuer.mint()
    await TxnTokenVerifier(good, trust_domain=TRUST_DOMAIN).averify(token)
    with pytest.raises(Exception, match="keys_unavailable"):
        TxnTokenVerifier(down, trust_domain=TRUST_DOMAIN).verify(token)

    ok, failed = otel_capture.spans("txtoken.jwks.fetch")
    assert ok.kind == SpanKind.CLIENT and ok.attributes["url.full"] == f"{server.url}/jwks"
    assert ok.status.status_code == StatusCode.UNSET
    assert failed.attributes["error.type"] == "ConnectError"
    assert failed.status.status_code == StatusCode.ERROR
    verify_spans = otel_capture.spans("txtoken.verify")
    assert ok.parent is not None and ok.parent.span_id == verify_spans[0].context.span_id  # fetched while verifying
    assert otel_capture.counts("txtoken.jwks.fetches") == {
        (("txtoken.outcome", "success"),): 1,
        (("error.type", "ConnectError"), ("txtoken.outcome", "failure")): 1,
    }


def test_replay_store_hits_are_counted_by_namespace(otel_capture: Captured) -> None:
    store = MemoryReplayStore()
    assert store.first_use("wpt:jti-1", 2e9)
    assert not store.first_use("wpt:jti-1", 2e9)
    assert not store.first_use("wpt:jti-1", 2e9)
    assert not (store.first_use("assertion:jti-2", 2e9) and store.first_use("assertion:jti-2", 2e9))
    assert otel_capture.counts("txtoken.replay.hits") == {
        (("txtoken.replay.namespace", "wpt"),): 2,
        (("txtoken.replay.namespace", "assertion"),): 1,
    }


def test_nothing_is_reported_once_uninstrumented(issuer: Issuer, otel_capture: Captured) -> None:
    from txtoken import otel

    otel.uninstrument()
    assert telemetry.observer is None
    issuer.verifier().verify(issuer.mint())
    assert otel_capture.spans() == []


def test_verify_span_is_a_child_of_the_callers_span(issuer: Issuer, otel_capture: Captured) -> None:
    tracer = trace.get_tracer("test", tracer_provider=otel_capture.tracer_provider)
    with tracer.start_as_current_span("request") as parent:
        issuer.verifier().verify(issuer.mint())
    (span,) = otel_capture.spans("txtoken.verify")
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id


def test_refusal_log_carries_method_path_status_and_code(
    serve: Serve, issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="txtoken.asgi")
    server = serve(otel_app(issuer.verifier()))
    forged = issuer.bad_signature()
    response = httpx.get(f"{server.url}/inside?q=1", headers={"Txn-Token": forged})
    assert response.status_code == 401
    (record,) = (r for r in caplog.records if r.name == "txtoken.asgi")
    fields = {name: record.__dict__[name] for name in ("method", "path", "status", "code")}
    assert fields == {"method": "GET", "path": "/inside", "status": 401, "code": "signature_invalid"}
    assert forged.split(".")[1] not in record.getMessage()


def test_a_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    from txtoken.errors import ConfigurationError
    from txtoken.service.metrics import PrometheusMetrics

    monkeypatch.delitem(sys.modules, "txtoken.otel")
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install 'txtoken\[otel\]'"):
        importlib.import_module("txtoken.otel")
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.prometheus", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'txtoken\[prometheus\]'"):
        PrometheusMetrics()


def test_nothing_imports_opentelemetry_unless_asked() -> None:
    """The core, the TTS and the integrations run without the ``otel`` extra: only ``txtoken.otel`` imports it."""
    import subprocess
    import sys

    modules = "txtoken, txtoken.cli, txtoken.service, txtoken_asgi, txtoken_grpc, txtoken_httpx"
    code = f"import sys, {modules}; print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'prom'))))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"
