"""payments (ASGI): charges an order. Request binding: the amount and order id in the query must be the ones the
Txn-Token carries, and the token must carry inventory's reservation: a token for 25.00 EUR cannot charge 2500.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service_mesh_demo.common import DemoEnv, prefetch_keys, readiness, serve_http
from service_mesh_demo.hops import ReportingMiddleware, http_sink
from service_mesh_demo.topology import workload_id
from txtoken.context import require_transaction
from txtoken.policy import Policy, Rule
from txtoken_asgi import TxnTokenMiddleware

__all__ = ["POLICY", "app"]

POLICY = Policy(
    [
        Rule(
            "POST /charges",
            scopes=["payments.charge"],
            tctx={"reservation_id": {"present": True}},
            bind={"query.amount": "amount", "query.order_id": "order_id"},
            callers=[workload_id("inventory")],  # charges come from inventory only
        )
    ]
)


def app(env: DemoEnv) -> Starlette:
    tts_keys = env.tts_keys()

    async def charge(request: Request) -> Response:
        txn = require_transaction()
        return JSONResponse(
            {"payment_id": f"p-{uuid.uuid4().hex[:8]}", "charged": txn.tctx["amount"], "currency": txn.tctx["currency"]}
        )

    async def healthz(request: Request) -> Response:
        return await readiness(tts_keys)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await prefetch_keys(tts_keys)
        yield

    return Starlette(
        routes=[Route("/charges", charge, methods=["POST"]), Route("/healthz", healthz)],
        middleware=[
            Middleware(ReportingMiddleware, service="payments", sink=http_sink(env.collector), prefixes=("/charges",)),
            Middleware(
                TxnTokenMiddleware,
                verifier=env.verifier(tts_keys),
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
