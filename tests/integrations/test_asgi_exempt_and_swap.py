"""TxnTokenMiddleware: a handler needing a transaction on an exempt path, and the verifier swapped on app.state."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from txtoken import KeySet, TxnTokenVerifier, require_transaction
from txtoken.errors import NoTransaction
from txtoken.testing import TxnTokenKit
from txtoken_asgi import VERIFIER_STATE, TxnTokenMiddleware

from ..conftest import RunningServer
from .asgi_apps import app
from .conftest import TRUST_DOMAIN, Issuer

Serve = Callable[..., RunningServer]


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/whoami", "/whoami-sync"])
async def test_require_transaction_on_an_exempt_path_is_a_401_no_transaction(
    serve: Serve, issuer: Issuer, path: str
) -> None:
    server = serve(app(issuer.verifier(), exempt_paths=[path]))
    token = issuer.mint()
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.get(path, headers={"Txn-Token": token})  # a token, but the path is not verified
    assert response.status_code == 401
    assert response.json()["error"] == "no_transaction"
    assert response.headers["www-authenticate"] == 'Txn-Token error="no_transaction"'
    assert token not in response.text


@pytest.mark.anyio
async def test_require_transaction_before_accepting_an_exempt_websocket_refuses_the_handshake(
    serve: Serve, issuer: Issuer
) -> None:
    async def needs_transaction(websocket: WebSocket) -> None:
        require_transaction()
        await websocket.accept()

    ws_app = Starlette(
        routes=[WebSocketRoute("/ws", needs_transaction)],
        middleware=[Middleware(TxnTokenMiddleware, verifier=issuer.verifier(), exempt_paths=["/ws"])],
    )
    server = serve(ws_app, ws="websockets-sansio")
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(f"ws://127.0.0.1:{server.port}/ws"):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body or b"{}")["error"] == "no_transaction"


@pytest.mark.anyio
async def test_no_transaction_after_the_response_started_is_not_hidden(issuer: Issuer) -> None:
    async def starts_then_needs_one(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        require_transaction()

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    middleware = TxnTokenMiddleware(starts_then_needs_one, verifier=issuer.verifier(), exempt_paths=["/x"])
    with pytest.raises(NoTransaction):
        await middleware({"type": "http", "path": "/x", "headers": []}, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start"]  # no second response start


@pytest.mark.anyio
async def test_the_verifier_on_app_state_replaces_the_one_the_app_was_built_with(serve: Serve) -> None:
    kit = TxnTokenKit(trust_domain=TRUST_DOMAIN)
    built = app(TxnTokenVerifier(KeySet.generate(), trust_domain=TRUST_DOMAIN))  # as production built it
    server = serve(built)
    async with httpx.AsyncClient(base_url=server.url, headers=kit.headers(scope="trade")) as client:
        assert (await client.get("/whoami")).json()["error"] == "kid_unknown"
        setattr(built.state, VERIFIER_STATE, kit.verifier)
        assert (await client.get("/whoami")).json()["sub"] == "user-1"
        delattr(built.state, VERIFIER_STATE)
        assert (await client.get("/whoami")).json()["error"] == "kid_unknown"
