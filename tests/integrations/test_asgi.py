"""TxnTokenMiddleware over a real uvicorn server: exposure, every refusal, exemptions, WebSockets, policy."""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from txtoken import TxnTokenVerifier, current_transaction, use_transaction
from txtoken.policy import Policy, Rule
from txtoken_asgi import TxnTokenMiddleware

from ..conftest import RunningServer
from .asgi_apps import app
from .conftest import INVALID_TOKENS, Issuer, invalid_token

Serve = Callable[..., RunningServer]


def assert_refusal(response: httpx.Response, status: int, code: str, token: str | None = None) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["error_description"], str) and body["error_description"]
    if status == 401:
        assert response.headers["www-authenticate"] == f'Txn-Token error="{code}"'
    else:
        assert "www-authenticate" not in response.headers
    if token:
        assert token not in response.text


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/whoami", "/whoami-sync"])
async def test_handler_sees_the_verified_transaction_in_every_channel(serve: Serve, issuer: Issuer, path: str) -> None:
    server = serve(app(issuer.verifier()), ws="websockets-sansio")
    token = issuer.mint(sub="bob")
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.get(path, headers={"Txn-Token": token})
    assert response.status_code == 200
    seen = response.json()
    txn = issuer.verifier().verify(token).txn
    assert seen["txn"] == seen["state"] == seen["scope"] == txn
    assert seen["sub"] == seen["user"] == "bob"
    assert seen["auth_scopes"] == ["read", "trade"]
    assert seen["from_lifespan"] == "yes"  # the lifespan scope passed through the middleware
    assert "txn-token" not in response.headers


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "code"), [*INVALID_TOKENS, ("missing", "token_missing"), ("twice", "token_duplicated")]
)
async def test_each_invalid_token_is_refused_with_401_and_its_code(
    serve: Serve, issuer: Issuer, kind: str, code: str
) -> None:
    server = serve(app(issuer.verifier()))
    if kind == "missing":
        headers: list[tuple[str, str]] = []
        token = None
    elif kind == "twice":
        token = issuer.mint()
        headers = [("Txn-Token", token), ("Txn-Token", token)]
    else:
        token = invalid_token(issuer, kind)
        headers = [("Txn-Token", token)]
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.get("/whoami", headers=headers)
    assert_refusal(response, 401, code, token)


@pytest.mark.anyio
async def test_unreachable_keys_are_503(serve: Serve, issuer: Issuer, keyless_verifier: TxnTokenVerifier) -> None:
    server = serve(app(keyless_verifier))
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.get("/whoami", headers={"Txn-Token": issuer.mint()})
    assert_refusal(response, 503, "keys_unavailable")


@pytest.mark.anyio
async def test_policy_refusal_is_403(serve: Serve, issuer: Issuer) -> None:
    policy = Policy([Rule("GET /whoami", scopes=["admin"])], unmatched="allow")
    server = serve(app(issuer.verifier(), policy=policy))
    token = issuer.mint()
    async with httpx.AsyncClient(base_url=server.url) as client:
        refused = await client.get("/whoami", headers={"Txn-Token": token})
        unmatched = await client.get("/whoami-sync", headers={"Txn-Token": token})
    assert_refusal(refused, 403, "insufficient_scope", token)
    assert unmatched.status_code == 200


@pytest.mark.anyio
async def test_starlette_requires_uses_the_token_scopes(serve: Serve, issuer: Issuer) -> None:
    server = serve(app(issuer.verifier()))
    async with httpx.AsyncClient(base_url=server.url, headers={"Txn-Token": issuer.mint()}) as client:
        assert (await client.get("/trade")).json() == {"sub": "alice"}
        assert (await client.get("/admin")).status_code == 403


@pytest.mark.anyio
async def test_exempt_paths_need_no_token_and_run_outside_a_transaction(serve: Serve, issuer: Issuer) -> None:
    server = serve(app(issuer.verifier(), exempt_paths=["/health", "/public/*"]))
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/health")).text == "ok"
        assert (await client.get("/public/info")).text == "ok"
        assert (await client.get("/whoami")).status_code == 401


@pytest.mark.anyio
async def test_streaming_response_runs_inside_the_transaction(serve: Serve, issuer: Issuer) -> None:
    server = serve(app(issuer.verifier()))
    token = issuer.mint()
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.get("/stream", headers={"Txn-Token": token})
    txn = issuer.verifier().verify(token).txn
    assert response.text.splitlines() == [txn, txn, txn]


# -- request binding and audit mode -------------------------------------------------------------------------------

ORDER_RULE = Rule("POST /orders/{symbol}", scopes=["trade"], bind={"path.symbol": "symbol", "query.qty": "quantity"})


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/orders/MSFT?qty=100", 200),
        ("/orders/TSLA?qty=100", 403),  # path parameter differs from tctx.symbol
        ("/orders/MSFT?qty=1000", 403),  # query parameter differs from tctx.quantity
        ("/orders/MSFT?qty=100&qty=1000", 403),  # parameter pollution: a bound parameter twice
        ("/orders/MSFT", 403),  # bound parameter missing
    ],
)
async def test_request_binding_on_path_and_query(serve: Serve, issuer: Issuer, path: str, status: int) -> None:
    server = serve(app(issuer.verifier(), policy=Policy([ORDER_RULE])))
    token = issuer.mint()  # tctx: buy 100 MSFT
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post(path, headers={"Txn-Token": token})
    if status == 200:
        assert response.json() == {"symbol": "MSFT", "qty": "100"}
    else:
        assert_refusal(response, 403, "binding_mismatch", token)


@pytest.mark.anyio
async def test_audit_mode_lets_the_request_through_and_logs_without_the_token(
    serve: Serve, issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(app(issuer.verifier(), policy=Policy([ORDER_RULE], mode="audit")))
    token = issuer.mint()
    with caplog.at_level(logging.DEBUG):
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.post("/orders/TSLA?qty=1000", headers={"Txn-Token": token})
    assert response.status_code == 200
    audits = [r for r in caplog.records if r.name == "txtoken.policy"]
    assert len(audits) == 1
    txn = issuer.verifier().verify(token).txn
    assert "binding_mismatch" in audits[0].getMessage() and txn in audits[0].getMessage()
    assert all(token not in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
async def test_no_token_in_any_log_line_or_body(serve: Serve, issuer: Issuer, caplog: pytest.LogCaptureFixture) -> None:
    server = serve(app(issuer.verifier(), policy=Policy([ORDER_RULE])))
    tokens = [invalid_token(issuer, kind) for kind, _ in INVALID_TOKENS if kind != "oversized"] + [issuer.mint()]
    bodies = []
    with caplog.at_level(logging.DEBUG):
        async with httpx.AsyncClient(base_url=server.url) as client:
            for token in tokens:
                for path in ("/orders/TSLA?qty=1", "/whoami"):
                    response = await client.post(path, headers={"Txn-Token": token})
                    assert response.status_code in (401, 403, 405)
                    bodies.append(response.text)
    logged = [r.getMessage() + json.dumps(r.args, default=str) for r in caplog.records]
    assert any("refused" in line for line in logged)
    for token in tokens:
        assert not any(token in line for line in logged)
        assert not any(token in body for body in bodies)


# -- WebSockets ---------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_websocket_is_verified_at_connect(serve: Serve, issuer: Issuer) -> None:
    server = serve(app(issuer.verifier()), ws="websockets-sansio")
    url = f"ws://127.0.0.1:{server.port}/ws"
    token = issuer.mint()
    async with connect(url, additional_headers={"Txn-Token": token}) as ws:
        seen = json.loads(await ws.recv())
    assert seen == {"txn": issuer.verifier().verify(token).txn, "user": "alice"}

    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(url, additional_headers={"Txn-Token": issuer.expired()}):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body or b"{}")["error"] == "token_expired"


@pytest.mark.anyio
async def test_websocket_refusal_closes_with_policy_violation_without_http_response_extension(issuer: Issuer) -> None:
    async def never_called(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app ran for a refused handshake")

    middleware = TxnTokenMiddleware(never_called, verifier=issuer.verifier())
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
    await middleware(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "token_missing"}]


# -- the ContextVar around the app, observed from the caller's own context ------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("fails", [False, True])
async def test_transaction_is_set_for_the_app_and_reset_after_it_also_on_error(issuer: Issuer, fails: bool) -> None:
    """The app sees the request's transaction; the server's ``send`` runs outside it (what the server schedules
    while sending, such as uvicorn's keep-alive timer, must not capture the transaction), and it is reset after."""
    in_app: list[str | None] = []
    in_send: list[str | None] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        txn = current_transaction()
        in_app.append(txn.txn if txn else None)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if fails:
            raise RuntimeError("the handler failed mid-response")
        await send({"type": "http.response.body", "body": b""})
        txn = current_transaction()
        in_app.append(txn.txn if txn else None)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        txn = current_transaction()
        in_send.append(txn.txn if txn else None)

    token = issuer.mint()
    outer = issuer.verified()
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [(b"txn-token", token.encode())]}
    with use_transaction(outer):
        if fails:
            with pytest.raises(RuntimeError):
                await TxnTokenMiddleware(inner, verifier=issuer.verifier())(scope, receive, send)
        else:
            await TxnTokenMiddleware(inner, verifier=issuer.verifier())(scope, receive, send)
        assert current_transaction() is outer
    txn = issuer.verifier().verify(token).txn
    assert in_app == [txn] * (1 if fails else 2)
    assert in_send == [outer.txn] * (1 if fails else 2)


@pytest.mark.anyio
async def test_callbacks_scheduled_while_sending_do_not_capture_the_transaction(issuer: Issuer) -> None:
    """A timer the server arms in ``send`` (as uvicorn does for keep-alive) copies the context of that moment."""
    captured: list[contextvars.Context] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        captured.append(contextvars.copy_context())

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [(b"txn-token", issuer.mint().encode())]}
    await TxnTokenMiddleware(app, verifier=issuer.verifier())(scope, receive, send)
    assert len(captured) == 2
    assert all(context.run(current_transaction) is None for context in captured)


@pytest.mark.anyio
async def test_routes_and_exempt_paths_are_matched_below_the_root_path(issuer: Issuer) -> None:
    statuses: list[int] = []

    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    middleware = TxnTokenMiddleware(
        ok, verifier=issuer.verifier(), policy=Policy([ORDER_RULE]), exempt_paths=["/health"]
    )
    token = issuer.mint().encode()
    for path, headers in (
        ("/api/orders/MSFT", [(b"txn-token", token)]),
        ("/api/orders/TSLA", [(b"txn-token", token)]),
        ("/api/health", []),
    ):
        scope = {"type": "http", "method": "POST", "root_path": "/api", "path": path, "headers": headers}
        await middleware({**scope, "query_string": b"qty=100"}, receive, send)
    assert statuses == [200, 403, 200]
