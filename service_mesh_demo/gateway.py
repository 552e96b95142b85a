"""The edge gateway: validates the user's access token, exchanges it for a Txn-Token, forwards the order.

The access token stops here. Inside, only the Txn-Token travels: it says who (``sub``), what for (``scope``), which
order (``tctx``) and from where (``rctx``). The gateway also serves the viewer: a page drawing every transaction
hop by hop, fed by the hop reports of all services.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
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
from txtoken.claims import TOKEN_TYPE_ACCESS_TOKEN
from txtoken.context import use_transaction
from txtoken.errors import TxTokenError
from txtoken.keysource import KeySource, RemoteJwksKeySource
from txtoken.service.jwtcheck import JwtRules, verify_jwt
from txtoken_httpx import TxnTokenAuth

__all__ = ["CATALOGUE", "HopLog", "app"]

#: item -> unit price (EUR).
CATALOGUE = {"widget": Decimal("12.50"), "gadget": Decimal("40.00")}
VIEWER = Path(__file__).with_name("viewer.html")
_ACCESS_TOKEN_RULES = JwtRules(
    typs=frozenset({"at+jwt"}), audiences=frozenset({ACCESS_TOKEN_AUDIENCE}), required=("iss", "sub", "exp", "scope")
)
_ALGORITHMS = frozenset({"ES256"})


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


def _refusal(code: str, status: int, description: str) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status_code=status)


def app(env: DemoEnv, *, idp_keys: KeySource | None = None) -> Starlette:
    """The gateway's routes: ``POST /api/orders``, ``POST /api/orders/{id}/refund``, the viewer and its collector."""
    log = HopLog()
    idp_jwks = idp_keys or RemoteJwksKeySource(f"{env.urls['idp']}/jwks", allow_http=True)
    tts_keys = env.tts_keys()
    verifier = env.verifier(tts_keys)
    tts = env.tts_client()
    orders_url = env.urls["orders"]
    auth = TxnTokenAuth(trusted_hosts=[httpx.URL(orders_url).host], identity=env.identity())
    http = httpx.AsyncClient(
        auth=auth,
        timeout=10.0,
        event_hooks={"request": [*auth.async_event_hooks["request"], aforward_trace]},
    )

    async def access_token_claims(request: Request) -> tuple[str, dict[str, Any]]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise PermissionError("invalid_token")
        claims = await verify_jwt(
            token, keys=idp_jwks, algorithms=_ALGORITHMS, rules=_ACCESS_TOKEN_RULES, now=time.time()
        )
        if claims.get("iss") != IDP_ISSUER:
            raise PermissionError("invalid_token")
        return token, claims

    async def exchange_and_forward(
        request: Request, *, scope: str, details: dict[str, Any], path: str, body: dict[str, Any]
    ) -> Response:
        try:
            access_token, claims = await access_token_claims(request)
        except (PermissionError, TxTokenError):
            return _refusal("invalid_token", 401, "a valid access token of the demo IdP is required")
        amr = claims.get("amr")
        try:
            issued = await tts.exchange(
                subject_token=access_token,
                subject_token_type=TOKEN_TYPE_ACCESS_TOKEN,
                scope=scope,
                request_context={
                    "req_ip": request.client.host if request.client else "unknown",
                    "authn": amr[0] if isinstance(amr, list) and amr else "unknown",
                },
                request_details=details,
            )
            txn = await verifier.averify(issued.access_token)
        except TxTokenError as exc:
            note_tts_call("exchange", scope, verdict=exc.code)
            return _refusal(exc.code, exc.http_status, exc.message)
        note_tts_call("exchange", scope, added=details)
        note_transaction(txn, note=f"exchanged the access token for a Txn-Token ({scope})")
        with use_transaction(txn):
            response = await http.post(f"{orders_url}{path}", json=body)
        answer = response.json() if response.headers.get("content-type") == "application/json" else {}
        return JSONResponse({**answer, "txn": txn.txn}, status_code=response.status_code)

    async def create_order(request: Request) -> Response:
        try:
            body = await request.json()
            item, quantity = str(body["item"]), int(body["quantity"])
            price = CATALOGUE[item]
        except (ValueError, KeyError, TypeError):
            return _refusal("invalid_order", 400, f"an order is {{item: {' | '.join(CATALOGUE)}, quantity: int}}")
        if not 0 < quantity <= 100:
            return _refusal("invalid_order", 400, "quantity must be between 1 and 100")
        order_id = f"o-{uuid.uuid4().hex[:8]}"
        details = {
            "order_id": order_id,
            "item": item,
            "quantity": quantity,
            "amount": str(price * quantity),
            "currency": "EUR",
        }
        scope = "orders.create inventory.reserve payments.charge"
        return await exchange_and_forward(
            request, scope=scope, details=details, path=f"/orders/{order_id}", body={"item": item, "quantity": quantity}
        )

    async def refund(request: Request) -> Response:
        order_id = request.path_params["order_id"]
        return await exchange_and_forward(
            request,
            scope="orders.refund",
            details={"order_id": order_id},
            path=f"/orders/{order_id}/refund",
            body={},
        )

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
        await tts.aclose()

    return Starlette(
        routes=[
            Route("/api/orders", create_order, methods=["POST"]),
            Route("/api/orders/{order_id}/refund", refund, methods=["POST"]),
            Route("/", viewer),
            Route("/demo/transactions", transactions),
            Route("/demo/hops", collect, methods=["POST"]),
            Route("/healthz", healthz),
        ],
        middleware=[Middleware(ReportingMiddleware, service="gateway", sink=log.add, prefixes=("/api/",))],
        lifespan=lifespan,
    )


def run() -> None:
    env = DemoEnv.load()
    serve_http(app(env), env)
