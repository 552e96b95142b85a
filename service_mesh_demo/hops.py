"""Hop reports: every service tells the viewer what it saw, so the demo can draw each transaction hop by hop.

A report carries the service, the protocol, the verified context it ran with (``txn``, ``req_wl``, ``scope``, the
demo's non-secret ``tctx`` values), the verdict with its plain-language reason, the time spent, and the calls the
service made to the Txn-Token Service during the hop (the exchange, each replacement) — never a token. Reports are
grouped by a demo trace label (``x-demo-trace``) that the scenario sets on its first request and every hop forwards,
the way trace context travels; it is how a refusal before any token was verified still lands in the right
transaction."""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service_mesh_demo.reasons import reason_for
from txtoken.context import current_caller
from txtoken.verify import VerifiedTxnToken

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]

__all__ = [
    "TRACE_HEADER",
    "Hop",
    "HopSink",
    "ReportingMiddleware",
    "ReportingServerInterceptor",
    "TraceClientInterceptor",
    "aforward_trace",
    "forward_trace",
    "note_transaction",
    "note_tts_call",
]

TRACE_HEADER = "x-demo-trace"
logger = logging.getLogger("demo.hops")

_trace: contextvars.ContextVar[str] = contextvars.ContextVar("demo_trace", default="")
_seen: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("demo_seen", default=None)


@dataclass
class Hop:
    """What one service saw of one request."""

    trace: str
    service: str
    protocol: str
    route: str
    verdict: str  # "ok", or the stable error code of the refusal
    status: str
    ms: float
    at: float = field(default_factory=time.time)  # when the hop started
    txn: str | None = None
    req_wl: str | None = None
    scope: str | None = None
    tctx_keys: list[str] = field(default_factory=list)
    tctx: dict[str, Any] = field(default_factory=dict)  # the demo's order details: not secrets
    note: str = ""
    reason: str = ""  # why it was refused, in plain words
    tts: list[dict[str, Any]] = field(default_factory=list)  # what the service asked the TTS for, in order
    caller: str | None = None  # the calling workload (its WIT's sub), once its WIT and WPT verified

    def context_from(self, txn: VerifiedTxnToken | None) -> None:
        if txn is not None:
            self.txn, self.req_wl, self.scope = txn.txn, txn.req_wl, txn.scope
            self.tctx_keys = sorted(txn.tctx)
            self.tctx = dict(sorted(txn.tctx.items()))

    def finish(self, seen: dict[str, Any], txn: VerifiedTxnToken | None) -> Hop:
        """Complete the report with what the handler noted and the context it ran with."""
        self.note = str(seen.get("note", ""))
        self.caller = seen.get("caller")
        self.tts = list(seen.get("tts", []))
        self.reason = "" if self.verdict == "ok" else reason_for(self.verdict)
        self.context_from(txn)
        return self


HopSink = Callable[[Hop], Awaitable[None]]


def http_sink(collector_url: str) -> HopSink:
    """Post reports to the viewer's collector; a report that cannot be delivered is dropped, never an error."""
    client = httpx.AsyncClient(timeout=2.0)

    async def send(hop: Hop) -> None:
        try:
            await client.post(collector_url, json=asdict(hop))
        except httpx.HTTPError as exc:
            logger.warning("hop report not delivered: %s", type(exc).__name__)

    return send


def note_transaction(txn: VerifiedTxnToken | None, note: str = "") -> None:
    """Tell this request's hop report which verified context the handler ran with (gRPC handlers call this)."""
    seen = _seen.get()
    if seen is not None:
        seen["txn"] = txn
        caller = current_caller()
        if caller is not None:
            seen["caller"] = caller.workload
        if note:
            seen["note"] = note


def note_tts_call(kind: str, scope: str, *, added: Mapping[str, Any] | None = None, verdict: str = "ok") -> None:
    """Tell this request's hop report about a call to the TTS: an ``exchange`` or a ``replacement``, the scope asked
    for, the context it added (non-secret demo values), and ``ok`` or the refusal's code."""
    seen = _seen.get()
    if seen is not None:
        call = {"kind": kind, "scope": scope, "added": dict(added or {}), "verdict": verdict, "at": time.time()}
        if verdict != "ok":
            call["reason"] = reason_for(verdict)
        seen.setdefault("tts", []).append(call)


def forward_trace(request: httpx.Request) -> None:
    """An httpx request hook: forward the demo trace label."""
    if _trace.get():
        request.headers[TRACE_HEADER] = _trace.get()


async def aforward_trace(request: httpx.Request) -> None:
    forward_trace(request)


def _error_code(body: bytes) -> str:
    try:
        value = json.loads(body)
    except ValueError:
        return "error"
    return str(value.get("error", "error")) if isinstance(value, dict) else "error"


class ReportingMiddleware:
    """Outermost ASGI middleware of a demo service: times each request and reports it."""

    def __init__(self, app: ASGIApp, *, service: str, sink: HopSink, prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.service = service
        self.sink = sink
        self.prefixes = prefixes  # the paths worth a report (not health checks, not the viewer)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        trace = headers.get(TRACE_HEADER, "")
        trace_reset = _trace.set(trace)
        seen: dict[str, Any] = {}
        seen_reset = _seen.set(seen)
        status = 500
        body = b""

        async def observe(message: Message) -> None:
            nonlocal status, body
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400 and len(body) < 4096:
                body += message.get("body", b"")
            await send(message)

        started_at, started = time.time(), time.perf_counter()
        try:
            await self.app(scope, receive, observe)
        finally:
            _trace.reset(trace_reset)
            _seen.reset(seen_reset)
            if trace:
                hop = Hop(
                    trace=trace,
                    service=self.service,
                    protocol="http",
                    route=f"{scope['method']} {scope['path']}",
                    verdict="ok" if status < 400 else _error_code(body),
                    status=str(status),
                    ms=round((time.perf_counter() - started) * 1000, 2),
                    at=started_at,
                )
                verified_caller = scope.get("txtoken.caller")
                if verified_caller is not None:
                    seen["caller"] = verified_caller.workload
                await self.sink(hop.finish(seen, scope.get("txtoken") or seen.get("txn")))


class ReportingServerInterceptor(grpc.aio.ServerInterceptor):
    """Outermost gRPC aio interceptor of a demo service: times each unary call and reports it."""

    def __init__(self, *, service: str, sink: HopSink) -> None:
        self.service = service
        self.sink = sink

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        metadata: Mapping[str, Any] = dict(handler_call_details.invocation_metadata or ())
        trace = str(metadata.get(TRACE_HEADER, ""))
        behavior = handler.unary_unary
        method = handler_call_details.method

        async def reported(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            trace_reset = _trace.set(trace)
            seen: dict[str, Any] = {}
            seen_reset = _seen.set(seen)
            started_at, started = time.time(), time.perf_counter()
            try:
                return await behavior(request, context)  # type: ignore[arg-type]  # aio handlers get the aio context
            finally:
                _trace.reset(trace_reset)
                _seen.reset(seen_reset)
                if trace:
                    code = context.code()
                    ok = code in (None, grpc.StatusCode.OK)
                    details = context.details() or ""
                    hop = Hop(
                        trace=trace,
                        service=self.service,
                        protocol="grpc",
                        route=method,
                        verdict="ok" if ok else details.split(":", 1)[0].strip() or str(code),
                        status="OK" if ok else getattr(code, "name", str(code)),
                        ms=round((time.perf_counter() - started) * 1000, 2),
                        at=started_at,
                    )
                    await self.sink(hop.finish(seen, seen.get("txn")))

        return grpc.unary_unary_rpc_method_handler(
            reported,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class TraceClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Forward the demo trace label in gRPC metadata."""

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        if _trace.get():
            metadata = grpc.aio.Metadata(*tuple(client_call_details.metadata or ()))
            metadata.add(TRACE_HEADER, _trace.get())
            client_call_details = grpc.aio.ClientCallDetails(
                client_call_details.method,
                client_call_details.timeout,
                metadata,
                client_call_details.credentials,
                client_call_details.wait_for_ready,
            )
        return await continuation(client_call_details, request)
