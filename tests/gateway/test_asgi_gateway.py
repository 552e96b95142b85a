"""The inbound gateway (txtoken.gateway + txtoken_asgi.GatewayMiddleware) with real uvicorn servers: a real TTS, the
platform's JWKS and introspection endpoint, the gateway app and a downstream hop that verifies what it receives."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from txtoken.client import AsyncTokenServiceClient
from txtoken.context import current_transaction
from txtoken.gateway import GatewayRoute, InboundGateway, RequestDetails
from txtoken.service import AccessTokenValidator
from txtoken_asgi import GatewayMiddleware, TxnTokenMiddleware
from txtoken_httpx import TxnTokenAuth

from ..conftest import RunningServer
from ..service.conftest import API_AUDIENCE, IDENTIFIER, ISSUERS, TRUST_DOMAIN, Tts, tamper

ROUTES = [
    GatewayRoute(
        "POST /trade/{ticker}",
        scope="trade.stocks",
        details=RequestDetails(
            path={"ticker": "ticker"},
            query={"note": "note"},
            body={"quantity": "order.quantity", "action": "order.action"},
        ),
    ),
    GatewayRoute("GET /quotes/{ticker}", scope="trade.read", details=RequestDetails(path={"ticker": "ticker"})),
]


def _downstream() -> Starlette:
    """A hop inside the trust domain: verifies the Txn-Token and answers what it saw."""

    async def echo(request: Request) -> Response:
        txn = current_transaction()
        assert txn is not None
        return JSONResponse(
            {
                "sub": txn.sub,
                "scope": txn.scope,
                "tctx": dict(txn.tctx),
                "rctx": dict(txn.rctx),
                "authorization": request.headers.get("authorization"),
            }
        )

    return Starlette(routes=[Route("/{rest:path}", echo, methods=["GET", "POST"])])


def _edge_app(downstream_url: str, gateway: InboundGateway) -> Starlette:
    """The app behind the gateway: forwards to the downstream hop inside the transaction with TxnTokenAuth."""
    http = httpx.AsyncClient(auth=TxnTokenAuth(trusted_hosts=["127.0.0.1"]))

    async def forward(request: Request) -> Response:
        seen = {
            "authorization": request.headers.get("authorization"),
            "txn_token_header": request.headers.get("txn-token"),
            "body": (await request.json()) if request.method == "POST" else None,
            "state_txn": request.state.txn.txn,
        }
        answer = (await http.get(f"{downstream_url}/hop")).json()
        return JSONResponse({"seen": seen, "downstream": answer})

    async def open_page(request: Request) -> Response:
        return JSONResponse(
            {"authorization": request.headers.get("authorization"), "txn": current_transaction() is not None}
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await http.aclose()
        await gateway.aclose()

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/trade/{ticker}", forward, methods=["POST"]),
            Route("/quotes/{ticker}", forward),
            Route("/open", open_page),
        ],
    )


Start = Callable[..., RunningServer]


@pytest.fixture
def servers() -> Iterator[Start]:
    started: list[RunningServer] = []

    def start(app: Any) -> RunningServer:
        server = RunningServer(app, proxy_headers=False).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


def _gateway(tts: Tts, *, token_endpoint: str | None = None, trusted: tuple[str, ...] = ()) -> InboundGateway:
    issuers = {name: tts.settings.issuers[name] for name in ("idp", "idp-opaque")}
    return InboundGateway(
        access_tokens=AccessTokenValidator(issuers, default_audience=API_AUDIENCE, leeway=5),
        token_service=AsyncTokenServiceClient(
            token_endpoint or tts.token_endpoint, credential=tts.gateway_assertion, trust_domain=TRUST_DOMAIN, retries=0
        ),
        verifier=tts.verifier(),
        routes=ROUTES,
        trusted_proxies=trusted,
        max_body=256,
    )


def _edge(tts: Tts, servers: Start, **options: Any) -> str:
    downstream = servers(TxnTokenMiddleware(_downstream(), verifier=tts.verifier()))
    gateway = _gateway(tts, **options)
    return servers(GatewayMiddleware(_edge_app(downstream.url, gateway), gateway=gateway)).url


def _trade(url: str, token: str | None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    headers.update(kwargs.pop("headers", {}))
    kwargs.setdefault("json", {"order": {"quantity": 5, "action": "buy", "unused": "never sent"}})
    return httpx.post(f"{url}/trade/MSFT", params={"note": "first"}, headers=headers, **kwargs)


def test_exchange_builds_the_transaction_from_the_declared_mapping(tts: Tts, servers: Start) -> None:
    """§1.5: the gateway sends request_context (client address, authentication method) and request_details from the
    declared mapping only; the app runs inside the Txn-Token and never sees the access token."""
    url = _edge(tts, servers)
    response = _trade(url, tts.platform.access_token(amr=["mfa"]), headers={"Txn-Token": "forged.by.client"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["seen"]["authorization"] is None
    assert body["seen"]["txn_token_header"] is None
    assert body["seen"]["body"]["order"]["quantity"] == 5
    hop = body["downstream"]
    assert hop["authorization"] is None
    assert hop["sub"] == "user:alice"
    assert hop["scope"] == "trade.stocks"
    assert hop["tctx"] == {"ticker": "MSFT", "note": "first", "quantity": 5, "action": "buy"}
    assert hop["rctx"] == {"req_ip": "127.0.0.1", "authn": "mfa"}
    assert body["seen"]["state_txn"]


def test_authn_defaults_to_oauth_and_undeclared_routes_pass_without_authorization(tts: Tts, servers: Start) -> None:
    url = _edge(tts, servers)
    quote = httpx.get(f"{url}/quotes/MSFT", headers={"Authorization": f"Bearer {tts.platform.access_token()}"})
    assert quote.status_code == 200, quote.text
    assert quote.json()["downstream"]["rctx"]["authn"] == "urn:ietf:rfc:6749"
    page = httpx.get(f"{url}/open", headers={"Authorization": "Bearer something"})
    assert page.json() == {"authorization": None, "txn": False}


def test_client_address_comes_from_a_trusted_proxy_only(tts: Tts, servers: Start) -> None:
    forwarded = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7"}
    untrusted = _edge(tts, servers)
    trusted = _edge(tts, servers, trusted=("127.0.0.1/32",))
    token = tts.platform.access_token
    assert _trade(untrusted, token(), headers=forwarded).json()["downstream"]["rctx"]["req_ip"] == "127.0.0.1"
    assert _trade(trusted, token(), headers=forwarded).json()["downstream"]["rctx"]["req_ip"] == "203.0.113.7"


def test_opaque_access_token_is_introspected(tts: Tts, servers: Start) -> None:
    """RFC 7662: an opaque token is validated by the issuer's introspection endpoint, then exchanged."""
    tts.platform.opaque["gateway-opaque-1"] = {
        "active": True,
        "sub": "dave",
        "scope": "trade.stocks",
        "iss": ISSUERS["idp"],
        "aud": API_AUDIENCE,
        "exp": int(time.time()) + 300,
        "client_id": "web-app",
    }
    url = _edge(tts, servers)
    response = _trade(url, "gateway-opaque-1")
    assert response.status_code == 200, response.text
    assert response.json()["downstream"]["sub"] == "user:dave"
    inactive = _trade(url, "gateway-opaque-unknown")
    assert (inactive.status_code, inactive.json()["error"]) == (401, "invalid_token")


@pytest.mark.parametrize(
    "case",
    ["missing", "not_bearer", "expired", "forged", "other_issuer", "wrong_audience"],
)
def test_bad_access_tokens_are_refused_401(tts: Tts, servers: Start, case: str) -> None:
    platform = tts.platform
    tokens: dict[str, str | None] = {
        "missing": None,
        "expired": platform.access_token(exp_in=-10),
        "forged": tamper(platform.access_token(), sub="mallory"),
        "other_issuer": platform.access_token(iss="https://evil.example"),
        "wrong_audience": platform.access_token(aud=IDENTIFIER),
    }
    url = _edge(tts, servers)
    if case == "not_bearer":
        response = _trade(url, None, headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
    else:
        response = _trade(url, tokens[case])
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.headers["cache-control"] == "no-store"


def test_scope_the_token_does_not_grant_is_refused_403(tts: Tts, servers: Start) -> None:
    """§13.6: the TTS refuses a scope beyond the access token's; the gateway answers 403 insufficient_scope."""
    url = _edge(tts, servers)
    response = _trade(url, tts.platform.access_token(scope="trade.read"))
    assert (response.status_code, response.json()["error"]) == (403, "insufficient_scope")


def test_token_service_down_is_503(tts: Tts, servers: Start) -> None:
    url = _edge(tts, servers, token_endpoint="http://127.0.0.1:9/token")
    response = _trade(url, tts.platform.access_token())
    assert (response.status_code, response.json()["error"]) == (503, "temporarily_unavailable")


def test_bad_requests_are_refused_without_echo(tts: Tts, servers: Start) -> None:
    url = _edge(tts, servers)
    token = tts.platform.access_token()
    marker = "<script>echo-me</script>"
    missing = _trade(url, token, json={"order": {"quantity": 5, marker: 1}})
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")
    repeated = httpx.post(
        f"{url}/trade/MSFT?note=a&note=b",
        json={"order": {"quantity": 5, "action": "buy"}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert (repeated.status_code, repeated.json()["error"]) == (400, "invalid_request")
    large = _trade(url, token, json={"order": {"quantity": 5, "action": "buy", "pad": "x" * 400}})
    assert (large.status_code, large.json()["error"]) == (413, "request_too_large")
    forged = _trade(url, tamper(token, sub=marker))
    for response in (missing, repeated, large, forged):
        assert marker not in response.text
        assert token not in response.text
