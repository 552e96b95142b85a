"""The edge gateway: validates the user's access token, exchanges it for a Txn-Token, forwards the order.

The access token stops here. Inside, only the Txn-Token travels: it says who (``sub``), what for (``scope``), which
order (``tctx``) and from where (``rctx``). The gateway also serves the viewer: a page drawing every transaction
hop by hop, fed by the hop reports of all services.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from service_mesh_demo.common import DemoEnv, prefetch_keys, readiness, serve_http
from service_mesh_demo.hops import Hop, ReportingMiddleware, aforward_trace, note_transaction, note_tts_call
from service_mesh_demo.idp import ACCESS_TOKEN_AUDIENCE, IDP_ISSUER
from txtoken.client import AsyncTokenServiceClient
from txtoken.context import require_transaction
from txtoken.gateway import GatewayRoute, InboundGateway, RequestDetails
from txtoken.service import AccessTokenValidator, issuer_configs
from txtoken.verify import TxnTokenVerifier
from txtoken_asgi import GatewayMiddleware
from txtoken_httpx import TxnTokenAuth

__all__ = ["CATALOGUE", "ROUTES", "HopLog", "app"]

#: item -> unit price (EUR).
CATALOGUE = {"widget": Decimal("12.50"), "gadget": Decimal("40.00")}
VIEWER = Path(__file__).with_name("viewer.html")


def _price_order(declared: Mapping[str, Any]) -> Mapping[str, Any]:
    """The order the transaction is for: the declared item and quantity, a new order id and the gateway's price."""
    item, quantity = declared["item"], declared["quantity"]
    if type(quantity) is not int or not 0 < quantity <= 100:
        raise ValueError("quantity must be between 1 and 100")
    price = CATALOGUE[item]
    return {
        "order_id": f"o-{uuid.uuid4().hex[:8]}",
        "item": item,
        "quantity": quantity,
        "amount": str(price * quantity),
        "currency": "EUR",
    }


#: The external API: what each route asks the TTS for, and which parts of the request become ``tctx``.
ROUTES = (
    GatewayRoute(
        "POST /api/orders",
        scope="orders.create inventory.reserve payments.charge",
        details=RequestDetails(body={"item": "item", "quantity": "quantity"}),
        derive=_price_order,
    ),
    GatewayRoute(
        "POST /api/orders/{order_id}/refund",
        scope="orders.refund",
        details=RequestDetails(path={"order_id": "order_id"}),
    ),
)


def inbound_gateway(env: DemoEnv, tts: AsyncTokenServiceClient, verifier: TxnTokenVerifier) -> InboundGateway:
    """The library's inbound gateway, configured for the demo IdP (the TTS trusts the same issuer, same keys)."""
    idp = {
        "kind": "oauth",
        "issuer": IDP_ISSUER,
        "jwks_file": str(env.data_dir / "idp" / "jwks.json"),
        "audiences": [ACCESS_TOKEN_AUDIENCE],
        "subject_prefix": "user:",
    }
    return InboundGateway(
        access_tokens=AccessTokenValidator(issuer_configs({"idp": idp}), default_audience=ACCESS_TOKEN_AUDIENCE),
        token_service=tts,
        verifier=verifier,
        routes=ROUTES,
    )


class HopLog:
    """The viewer's store: hop reports by trace label, in arrival order (bounded)."""

    def __init__(self, limit: int = 200) -> None:
        self.limit = limit
        self.traces: dict[str, list[dict[str, Any]]] = {}

    async def add(self, hop: Hop | dict[str, Any]) -> None:
        record = asdict(hop) if isinstance(hop, Hop) else hop
        self.traces.setdefault(str(record["trace"]), []).append(record)
        while len(self.traces) > self.limit:
            del self.traces[next(iter(self.traces))]

    def transactions(self) -> list[dict[str, Any]]:
        return [{"trace": trace, "hops": sorted(hops, key=lambda h: h["at"])} for trace, hops in self.traces.items()]


def app(env: DemoEnv) -> Starlette:
    """The gateway's routes: ``POST /api/orders``, ``POST /api/orders/{id}/refund``, the viewer and its collector."""
    log = HopLog()
    tts_keys = env.tts_keys()
    edge = inbound_gateway(env, env.tts_client(), env.verifier(tts_keys))
    orders_url = env.urls["orders"]
    auth = TxnTokenAuth(trusted_hosts=[httpx.URL(orders_url).host], identity=env.identity())
    http = httpx.AsyncClient(
        auth=auth,
        timeout=10.0,
        event_hooks={"request": [*auth.async_event_hooks["request"], aforward_trace]},
    )

    async def forward(path: str, body: dict[str, Any]) -> Response:
        """Runs inside the transaction the library's gateway made; the access token never got this far."""
        txn = require_transaction()
        note_tts_call("exchange", txn.scope, added=txn.tctx)
        note_transaction(txn, note=f"exchanged the access token for a Txn-Token ({txn.scope})")
        response = await http.post(f"{orders_url}{path}", json=body)
        answer = response.json() if response.headers.get("content-type") == "application/json" else {}
        return JSONResponse({**answer, "txn": txn.txn}, status_code=response.status_code)

    async def create_order(request: Request) -> Response:
        order = require_transaction().tctx
        return await forward(f"/orders/{order['order_id']}", {"item": order["item"], "quantity": order["quantity"]})

    async def refund(request: Request) -> Response:
        return await forward(f"/orders/{require_transaction().tctx['order_id']}/refund", {})

    async def collect(request: Request) -> Response:
        await log.add(await request.json())
        return Response(status_code=204)

    async def transactions(request: Request) -> Response:
        return JSONResponse(log.transactions())

    async def viewer(request: Request) -> Response:
        return HTMLResponse(VIEWER.read_text(encoding="utf-8"))

    async def healthz(request: Request) -> Response:
        return await readiness(tts_keys)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await prefetch_keys(tts_keys)
        yield
        await http.aclose()
        await edge.aclose()

    return Starlette(
        routes=[
            Route("/api/orders", create_order, methods=["POST"]),
            Route("/api/orders/{order_id}/refund", refund, methods=["POST"]),
            Route("/", viewer),
            Route("/demo/transactions", transactions),
            Route("/demo/hops", collect, methods=["POST"]),
            Route("/healthz", healthz),
        ],
        middleware=[
            Middleware(ReportingMiddleware, service="gateway", sink=log.add, prefixes=("/api/",)),
            Middleware(GatewayMiddleware, gateway=edge),
        ],
        lifespan=lifespan,
    )


def run() -> None:
    env = DemoEnv.load()
    serve_http(app(env), env)
