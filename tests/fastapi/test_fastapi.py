"""txtoken_fastapi with real FastAPI apps: TestClient, httpx over ASGI and real uvicorn servers.

Each behaviour is checked in both modes: the dependency verifying the ``Txn-Token`` header itself, and behind
``TxnTokenMiddleware`` (the dependency then reads the transaction the middleware verified). No ``from __future__
import annotations`` here: FastAPI evaluates route annotations at run time, and these name locals of ``orders_app``.
"""

import importlib
import logging
import sys
from typing import Annotated, Any

import httpx
import httpx2
import pytest
from fastapi import APIRouter, FastAPI, Request, Security, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from txtoken import KeySet, TxnTokenVerifier, VerifiedTxnToken, current_transaction, require_transaction
from txtoken.testing import TxnTokenKit
from txtoken_asgi import TxnTokenMiddleware
from txtoken_fastapi import TxnTokenHTTPException, TxnTokenSecurity, docs_paths
from txtoken_httpx import TxnTokenAuth

from ..conftest import RunningServer

MODES = ["dependency", "middleware"]


def orders_app(verifier: TxnTokenVerifier, mode: str, *, downstream: str = "") -> FastAPI:
    """A FastAPI app with ``def`` and ``async def`` routes, a router guarded at router level, and an exempt path.

    ``mode`` ``dependency``: the dependency verifies; ``middleware``: ``TxnTokenMiddleware`` verifies every request
    (the OpenAPI document and documentation pages and ``/healthz`` exempt) and the dependency has no verifier.
    """
    txn_token = TxnTokenSecurity(verifier if mode == "dependency" else None)
    app = FastAPI()
    admin = APIRouter(prefix="/admin", dependencies=[Security(txn_token, scopes=["admin"])])

    def seen(txn: VerifiedTxnToken) -> dict[str, Any]:
        return {"txn": txn.txn, "sub": txn.sub, "current": current_transaction() is txn}

    @app.get("/orders/{order_id}")
    def read_order(
        order_id: int, txn: Annotated[VerifiedTxnToken, Security(txn_token, scopes=["orders.read"])]
    ) -> dict[str, Any]:
        return {**seen(txn), "order": order_id}

    @app.post("/orders")
    async def create_order(
        txn: Annotated[VerifiedTxnToken, Security(txn_token, scopes=["orders.write"])],
    ) -> dict[str, Any]:
        return seen(txn)

    @admin.get("/stats")
    async def stats() -> dict[str, Any]:
        return {"txn": require_transaction().txn}  # the router-level dependency made it current

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"txn": require_transaction().txn}  # exempt behind the middleware: a handler mistake

    @app.get("/forward")
    async def forward(txn: Annotated[VerifiedTxnToken, Security(txn_token)]) -> Any:
        async with httpx.AsyncClient(auth=TxnTokenAuth(trusted_hosts=["127.0.0.1"])) as client:
            return (await client.get(f"{downstream}/echo")).json()

    @app.get("/forward-sync")
    def forward_sync(txn: Annotated[VerifiedTxnToken, Security(txn_token)]) -> Any:
        with httpx.Client(auth=TxnTokenAuth(trusted_hosts=["127.0.0.1"])) as client:
            return client.get(f"{downstream}/echo").json()

    app.include_router(admin)
    if mode == "middleware":
        app.add_middleware(TxnTokenMiddleware, verifier=verifier, exempt_paths=[*docs_paths(app), "/healthz"])
    return app


def assert_fastapi_refusal(
    response: httpx.Response | httpx2.Response, status: int, code: str, token: str | None = None
) -> None:
    """FastAPI's ``HTTPException`` shape: ``{"detail": {"error": code, "error_description": ...}}``."""
    assert response.status_code == status
    detail = response.json()["detail"]
    assert detail["error"] == code
    assert isinstance(detail["error_description"], str) and detail["error_description"]
    assert response.headers["cache-control"] == "no-store"
    if status == 401:
        assert response.headers["www-authenticate"] == f'Txn-Token error="{code}"'
    else:
        assert "www-authenticate" not in response.headers
    if token:
        assert token not in response.text


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method, path", [("GET", "/orders/7"), ("POST", "/orders")])
def test_def_and_async_def_routes_get_the_verified_transaction(
    txtoken_kit: TxnTokenKit, mode: str, method: str, path: str
) -> None:
    client = TestClient(orders_app(txtoken_kit.verifier, mode))
    token = txtoken_kit.mint(sub="bob", scope="orders.read orders.write")
    response = client.request(method, path, headers=txtoken_kit.headers(token))
    assert response.status_code == 200
    seen = response.json()
    assert seen["txn"] == txtoken_kit.verifier.verify(token).txn
    assert seen["sub"] == "bob"
    assert seen["current"] is True  # the same object is the current transaction in the handler


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_the_transaction_is_reset_after_the_request(txtoken_kit: TxnTokenKit, mode: str) -> None:
    # httpx's ASGI transport runs the app in this very task: a transaction left set would be seen here.
    transport = httpx.ASGITransport(app=orders_app(txtoken_kit.verifier, mode))
    async with httpx.AsyncClient(transport=transport, base_url="http://orders") as client:
        ok = await client.post("/orders", headers=txtoken_kit.headers(scope="orders.write"))
        assert ok.json()["current"] is True
        assert current_transaction() is None
        refused = await client.post("/orders", headers=txtoken_kit.headers(scope="orders.read"))
        assert refused.status_code == 403
        assert current_transaction() is None


@pytest.mark.parametrize("mode", MODES)
def test_missing_scopes_are_refused_with_403_insufficient_scope(txtoken_kit: TxnTokenKit, mode: str) -> None:
    client = TestClient(orders_app(txtoken_kit.verifier, mode))
    token = txtoken_kit.mint(scope="orders.read")
    assert_fastapi_refusal(client.post("/orders", headers=txtoken_kit.headers(token)), 403, "insufficient_scope", token)
    assert client.get("/orders/7", headers=txtoken_kit.headers(token)).status_code == 200


@pytest.mark.parametrize("mode", MODES)
def test_router_level_dependency_guards_every_route_of_the_router(txtoken_kit: TxnTokenKit, mode: str) -> None:
    client = TestClient(orders_app(txtoken_kit.verifier, mode))
    assert_fastapi_refusal(client.get("/admin/stats", headers=txtoken_kit.headers()), 403, "insufficient_scope")
    token = txtoken_kit.mint(scope="admin")
    response = client.get("/admin/stats", headers=txtoken_kit.headers(token))
    assert response.status_code == 200
    assert response.json()["txn"] == txtoken_kit.verifier.verify(token).txn


def test_each_invalid_token_is_refused_with_401_and_its_code(txtoken_kit: TxnTokenKit) -> None:
    client = TestClient(orders_app(txtoken_kit.verifier, "dependency"))
    now = int(txtoken_kit.clock())
    invalid = {
        "token_expired": txtoken_kit.mint(scope="orders.read", iat=now - 600, exp=now - 300),
        "aud_invalid": txtoken_kit.mint(scope="orders.read", aud="other.example"),
        "kid_unknown": TxnTokenKit().mint(scope="orders.read"),
        "claim_invalid": txtoken_kit.mint(scope="orders.read", txn=None),
        "token_malformed": "not-a-jwt",
    }
    for code, token in invalid.items():
        assert_fastapi_refusal(client.get("/orders/7", headers=txtoken_kit.headers(token)), 401, code, token)
    assert_fastapi_refusal(client.get("/orders/7"), 401, "token_missing")
    token = txtoken_kit.mint(scope="orders.read")
    twice = client.get("/orders/7", headers=[("Txn-Token", token), ("Txn-Token", token)])
    assert_fastapi_refusal(twice, 401, "token_duplicated", token)


def test_refusals_are_logged_with_status_and_code_only(
    txtoken_kit: TxnTokenKit, caplog: pytest.LogCaptureFixture
) -> None:
    client = TestClient(orders_app(txtoken_kit.verifier, "dependency"))
    token = txtoken_kit.mint(scope="orders.read")
    with caplog.at_level(logging.INFO, logger="txtoken.fastapi"):
        client.post("/orders", headers=txtoken_kit.headers(token))
    assert [r.getMessage() for r in caplog.records] == ["refused a Txn-Token: status=403 code=insufficient_scope"]
    assert token not in caplog.text


@pytest.mark.parametrize("mode", MODES)
def test_openapi_document_carries_the_txn_token_scheme_and_each_operations_scopes(
    txtoken_kit: TxnTokenKit, mode: str
) -> None:
    client = TestClient(orders_app(txtoken_kit.verifier, mode))
    document = client.get("/openapi.json").json()  # served without a token in both modes
    scheme = document["components"]["securitySchemes"]["TxnToken"]
    assert {k: scheme[k] for k in ("type", "in", "name")} == {"type": "apiKey", "in": "header", "name": "Txn-Token"}
    assert "Txn-Token" in scheme["description"]
    paths = document["paths"]
    assert paths["/orders/{order_id}"]["get"]["security"] == [{"TxnToken": ["orders.read"]}]
    assert paths["/orders"]["post"]["security"] == [{"TxnToken": ["orders.write"]}]
    assert paths["/admin/stats"]["get"]["security"] == [{"TxnToken": ["admin"]}]
    assert paths["/forward"]["get"]["security"] == [{"TxnToken": []}]
    assert "security" not in paths["/healthz"]["get"]


def test_behind_the_middleware_docs_are_served_and_every_other_path_is_verified(txtoken_kit: TxnTokenKit) -> None:
    client = TestClient(orders_app(txtoken_kit.verifier, "middleware"))
    for path in ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    refused = client.get("/orders/7")
    assert refused.status_code == 401
    assert refused.json()["error"] == "token_missing"  # the middleware's own refusal, before any route


def test_docs_paths_follow_the_apps_settings() -> None:
    assert docs_paths(FastAPI()) == ["/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"]
    assert docs_paths(FastAPI(docs_url=None, openapi_url="/api/schema.json")) == ["/api/schema.json", "/redoc"]
    assert docs_paths(FastAPI(swagger_ui_oauth2_redirect_url=None, redoc_url=None)) == ["/openapi.json", "/docs"]
    assert docs_paths(FastAPI(openapi_url=None)) == []  # no document, no pages


def test_a_handler_needing_a_transaction_on_an_exempt_path_gets_401_no_transaction(
    txtoken_kit: TxnTokenKit, caplog: pytest.LogCaptureFixture
) -> None:
    client = TestClient(orders_app(txtoken_kit.verifier, "middleware"))
    with caplog.at_level(logging.WARNING, logger="txtoken.asgi"):
        response = client.get("/healthz", headers=txtoken_kit.headers())
    assert response.status_code == 401
    assert response.json()["error"] == "no_transaction"
    assert response.headers["www-authenticate"] == 'Txn-Token error="no_transaction"'
    assert "exempt" in caplog.text and "path='/healthz'" in caplog.text


def test_the_dependency_without_a_verifier_on_an_exempt_path_refuses_with_no_transaction(
    txtoken_kit: TxnTokenKit,
) -> None:
    txn_token = TxnTokenSecurity()  # relies on the middleware, which does not verify /public
    app = FastAPI()

    @app.get("/public")
    def public(txn: Annotated[VerifiedTxnToken, Security(txn_token)]) -> str:
        return txn.txn

    app.add_middleware(TxnTokenMiddleware, verifier=txtoken_kit.verifier, exempt_paths=["/public"])
    assert_fastapi_refusal(TestClient(app).get("/public", headers=txtoken_kit.headers()), 401, "no_transaction")


def test_the_dependency_with_a_verifier_verifies_on_a_path_the_middleware_exempts(txtoken_kit: TxnTokenKit) -> None:
    txn_token = TxnTokenSecurity(txtoken_kit.verifier)
    app = FastAPI()

    @app.get("/public")
    def public(txn: Annotated[VerifiedTxnToken, Security(txn_token)]) -> str:
        return txn.sub

    app.add_middleware(TxnTokenMiddleware, verifier=txtoken_kit.verifier, exempt_paths=["/public"])
    client = TestClient(app)
    assert client.get("/public", headers=txtoken_kit.headers(sub="carol")).json() == "carol"
    assert_fastapi_refusal(client.get("/public"), 401, "token_missing")


def test_an_exception_handler_shapes_the_error_body(txtoken_kit: TxnTokenKit) -> None:
    app = orders_app(txtoken_kit.verifier, "dependency")

    @app.exception_handler(TxnTokenHTTPException)
    async def problem(request: Request, exc: TxnTokenHTTPException) -> JSONResponse:
        body = {"type": f"urn:example:txtoken:{exc.error.code}", "status": exc.status_code}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    client = TestClient(app)
    token = txtoken_kit.mint(scope="orders.read")
    response = client.post("/orders", headers=txtoken_kit.headers(token))
    assert response.status_code == 403
    assert response.json() == {"type": "urn:example:txtoken:insufficient_scope", "status": 403}
    missing = client.post("/orders")
    assert missing.json() == {"type": "urn:example:txtoken:token_missing", "status": 401}
    assert missing.headers["www-authenticate"] == 'Txn-Token error="token_missing"'


@pytest.mark.parametrize("mode", MODES)
def test_app_state_swaps_the_verifier_of_an_app_built_elsewhere(
    txtoken_kit: TxnTokenKit, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    production = TxnTokenVerifier(KeySet.generate(), trust_domain=txtoken_kit.trust_domain)
    app = orders_app(production, mode)
    client = TestClient(app)
    headers = txtoken_kit.headers(scope="orders.read")
    assert client.get("/orders/7", headers=headers).status_code == 401  # kid_unknown to the production keys

    monkeypatch.setattr(app.state, "txtoken_verifier", txtoken_kit.verifier, raising=False)
    assert client.get("/orders/7", headers=headers).status_code == 200

    monkeypatch.undo()
    assert client.get("/orders/7", headers=headers).status_code == 401


def test_dependency_overrides_replace_the_dependency_as_for_any_fastapi_dependency(txtoken_kit: TxnTokenKit) -> None:
    production = TxnTokenSecurity(TxnTokenVerifier(KeySet.generate(), trust_domain=txtoken_kit.trust_domain))
    app = FastAPI()

    @app.get("/orders")
    def orders(txn: Annotated[VerifiedTxnToken, Security(production, scopes=["orders.read"])]) -> str:
        return require_transaction().sub

    app.dependency_overrides[production] = TxnTokenSecurity(txtoken_kit.verifier)
    client = TestClient(app)
    assert client.get("/orders", headers=txtoken_kit.headers(sub="dan", scope="orders.read")).json() == "dan"
    assert_fastapi_refusal(client.get("/orders", headers=txtoken_kit.headers()), 403, "insufficient_scope")


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_over_uvicorn_routes_scopes_and_outbound_propagation(
    serve: Any, txtoken_kit: TxnTokenKit, mode: str
) -> None:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"txn": require_transaction().txn, "token": request.headers["txn-token"]})

    downstream: RunningServer = serve(
        Starlette(
            routes=[Route("/echo", echo)], middleware=[Middleware(TxnTokenMiddleware, verifier=txtoken_kit.verifier)]
        )
    )
    server: RunningServer = serve(orders_app(txtoken_kit.verifier, mode, downstream=downstream.url))
    token = txtoken_kit.mint(scope="orders.read admin")
    txn = txtoken_kit.verifier.verify(token).txn
    async with httpx.AsyncClient(base_url=server.url, headers=txtoken_kit.headers(token)) as client:
        read = await client.get("/orders/7")
        assert read.status_code == 200 and read.json()["current"] is True
        assert read.json()["txn"] == txn
        assert_fastapi_refusal(await client.post("/orders"), 403, "insufficient_scope", token)
        assert (await client.get("/admin/stats")).json() == {"txn": txn}
        for path in ("/forward", "/forward-sync"):  # the dependency made it current: TxnTokenAuth forwards it
            assert (await client.get(path)).json() == {"txn": txn, "token": token}
        malformed = await client.get("/orders/7", headers={"Txn-Token": "x.y.z"})
    assert malformed.status_code == 401
    body = malformed.json()  # behind the middleware, the middleware refuses before any route, in its own shape
    assert (body["detail"] if mode == "dependency" else body)["error"] == "token_malformed"


def test_without_fastapi_the_import_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "txtoken_fastapi" or m.startswith("txtoken_fastapi.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # what an environment without FastAPI looks like to import
    with pytest.raises(ImportError, match=r"pip install 'txtoken\[fastapi\]'") as raised:
        importlib.import_module("txtoken_fastapi")
    assert raised.value.name == "fastapi"


def test_several_security_dependencies_verify_the_header_once(txtoken_kit: TxnTokenKit) -> None:
    class CountingVerifier(TxnTokenVerifier):
        calls = 0

        async def averify(self, token: str) -> VerifiedTxnToken:
            CountingVerifier.calls += 1
            return await super().averify(token)

    txn_token = TxnTokenSecurity(CountingVerifier(txtoken_kit.keys, trust_domain=txtoken_kit.trust_domain))
    router = APIRouter(dependencies=[Security(txn_token, scopes=["admin"])])

    @router.get("/both")
    def both(txn: Annotated[VerifiedTxnToken, Security(txn_token, scopes=["orders.read"])]) -> str:
        return txn.txn

    app = FastAPI()
    app.include_router(router)
    client = TestClient(app)
    assert client.get("/both", headers=txtoken_kit.headers(scope="admin orders.read")).status_code == 200
    assert CountingVerifier.calls == 1
    assert_fastapi_refusal(client.get("/both", headers=txtoken_kit.headers(scope="admin")), 403, "insufficient_scope")


@pytest.mark.parametrize("mode", MODES)
def test_a_websocket_route_under_a_guarded_router_is_refused_with_1008_and_the_code(
    txtoken_kit: TxnTokenKit, mode: str
) -> None:
    txn_token = TxnTokenSecurity(txtoken_kit.verifier if mode == "dependency" else None)
    router = APIRouter(dependencies=[Security(txn_token, scopes=["quotes.read"])])

    @router.websocket("/quotes")
    async def quotes(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"for": require_transaction().sub})
        await websocket.close()

    app = FastAPI()
    app.include_router(router)
    if mode == "middleware":
        app.add_middleware(TxnTokenMiddleware, verifier=txtoken_kit.verifier)
    client = TestClient(app)
    with client.websocket_connect("/quotes", headers=txtoken_kit.headers(sub="fay", scope="quotes.read")) as ws:
        assert ws.receive_json() == {"for": "fay"}
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/quotes", headers=txtoken_kit.headers()),
    ):
        pass
    assert (refused.value.code, refused.value.reason) == (1008, "insufficient_scope")
