"""orders (ASGI): places an order. Its route binds the order id in the path to the one the Txn-Token carries, and it
narrows the scope before calling inventory: least privilege for everything downstream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service_mesh_demo.common import DemoEnv, prefetch_keys, readiness, serve_http
from service_mesh_demo.hops import (
    ReportingMiddleware,
    TraceClientInterceptor,
    aforward_trace,
    http_sink,
    note_transaction,
    note_tts_call,
)
from service_mesh_demo.inventory import RESERVE, encode_message
from service_mesh_demo.topology import workload_id
from txtoken.augment import aaugment
from txtoken.context import require_transaction
from txtoken.errors import TxTokenError
from txtoken.policy import Policy, Rule
from txtoken_asgi import TxnTokenMiddleware
from txtoken_grpc import aio_client_interceptors
from txtoken_httpx import TxnTokenAuth

__all__ = ["POLICY", "app"]

#: Orders are placed and refunded only through the gateway (its WIT authenticates it at every call).
POLICY = Policy(
    [
        Rule(
            "POST /orders/{order_id}",
            scopes=["orders.create"],
            bind={"path.order_id": "order_id"},
            callers=[workload_id("gateway")],
        ),
        Rule(
            "POST /orders/{order_id}/refund",
            scopes=["orders.refund"],
            bind={"path.order_id": "order_id"},
            callers=[workload_id("gateway")],
        ),
    ]
)


def app(env: DemoEnv) -> Starlette:
    tts_keys = env.tts_keys()
    verifier = env.verifier(tts_keys)
    tts = env.tts_client()
    shipping_url = env.urls.get("shipping")  # absent when the local runner left the nginx hop out
    shipping_auth = TxnTokenAuth(trusted_hosts=[httpx.URL(shipping_url or "http://shipping").host])
    shipping = httpx.AsyncClient(
        auth=shipping_auth,
        timeout=10.0,
        event_hooks={"request": [*shipping_auth.async_event_hooks["request"], aforward_trace]},
    )
    inventory: dict[str, grpc.aio.UnaryUnaryMultiCallable[dict[str, Any], dict[str, Any]]] = {}

    async def place(request: Request) -> Response:
        order = require_transaction().tctx
        narrowed = "inventory.reserve payments.charge"
        try:
            async with aaugment(tts, verifier, scope=narrowed):
                note_tts_call("replacement", narrowed)
                reply = await inventory["reserve"](
                    {k: order[k] for k in ("order_id", "item", "quantity", "amount")},
                    timeout=10,
                )
        except TxTokenError as exc:
            return JSONResponse({"error": exc.code, "error_description": exc.message}, status_code=exc.http_status)
        except grpc.aio.AioRpcError as exc:
            code = (exc.details() or "").split(":", 1)[0] or exc.code().name.lower()
            return JSONResponse({"error": code, "error_description": "inventory refused"}, status_code=502)
        if shipping_url is not None:  # the Node.js hop behind nginx: the Txn-Token goes as for any hop
            shipped = await shipping.post(
                f"{shipping_url}/shipments/{order['order_id']}", headers={"x-demo-from": "orders"}
            )
            if shipped.status_code != 200:
                return JSONResponse({"error": shipped.json().get("error", "error")}, status_code=502)
            reply = {**reply, "shipment_id": shipped.json()["shipment_id"]}
        return JSONResponse({"order_id": order["order_id"], "status": "placed", **reply})

    async def refund(request: Request) -> Response:
        # A refund needs payments.refund, which the user never granted: the TTS refuses to widen the scope (§13.15).
        widened = "orders.refund payments.refund"
        try:
            async with aaugment(tts, verifier, scope=widened):
                pass
        except TxTokenError as exc:
            note_tts_call("replacement", widened, verdict=exc.code)
            note_transaction(require_transaction(), note=f"asked the TTS for payments.refund: {exc.code}")
            return JSONResponse({"error": exc.code, "error_description": exc.message}, status_code=403)
        return JSONResponse({"error": "unexpected", "error_description": "the TTS widened the scope"}, status_code=500)

    async def healthz(request: Request) -> Response:
        return await readiness(tts_keys)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await prefetch_keys(tts_keys)
        # A grpc.aio channel belongs to the event loop it is created on: the server's.
        identity = aio_client_interceptors(identity=env.identity(), authority=env.urls["inventory"])
        interceptors = [*identity, TraceClientInterceptor()]
        async with grpc.aio.insecure_channel(env.urls["inventory"], interceptors=interceptors) as channel:
            inventory["reserve"] = channel.unary_unary(
                RESERVE, request_serializer=encode_message, response_deserializer=json.loads
            )
            yield
        await shipping.aclose()
        await tts.aclose()

    return Starlette(
        routes=[
            Route("/orders/{order_id}", place, methods=["POST"]),
            Route("/orders/{order_id}/refund", refund, methods=["POST"]),
            Route("/healthz", healthz),
        ],
        middleware=[
            Middleware(ReportingMiddleware, service="orders", sink=http_sink(env.collector), prefixes=("/orders",)),
            Middleware(
                TxnTokenMiddleware,
                verifier=verifier,
                policy=POLICY,
                exempt_paths=["/healthz"],
                callers=env.callers(),
                service_urls=[env.address],
            ),
        ],
        lifespan=lifespan,
    )


def run() -> None:
    env = DemoEnv.load()
    serve_http(app(env), env)
