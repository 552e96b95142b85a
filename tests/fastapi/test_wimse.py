"""txtoken_fastapi with WIMSE over real uvicorn servers: real httpx clients (``TxnTokenAuth`` with a workload
identity) send a WIT and a fresh WPT; ``CallerSecurity`` (or ``TxnTokenMiddleware``) verifies WIT → WPT → Txn-Token
and gives routes the calling workload.

Every WPT carries a single-use ``jti`` in an in-memory replay store: a request that passed through several
dependencies (and the middleware) was verified once, or its second check would have been refused as a replay. No
``from __future__ import annotations``: FastAPI evaluates the routes' annotations, which name locals.
"""

from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, Request, Security, WebSocket, WebSocketDisconnect
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from txtoken import KeySet, VerifiedTxnToken, current_caller, current_transaction, use_transaction
from txtoken.credentials import WitFileSource
from txtoken.errors import ConfigurationError
from txtoken.testing import TxnTokenKit
from txtoken.wimse import WIT_HEADER, WPT_HEADER, CallerVerifier, VerifiedCaller, WitIssuer, WitVerifier, create_wpt
from txtoken_asgi import TxnTokenMiddleware
from txtoken_fastapi import CallerSecurity, TxnTokenHTTPException, TxnTokenSecurity, docs_paths, problem_details
from txtoken_httpx import TxnTokenAuth

from ..conftest import RunningServer

MODES = ["dependency", "middleware"]


class Domain:
    """The trust domain's WIT key, and workloads' identities as files an agent wrote."""

    def __init__(self, trust_domain: str, directory: Path) -> None:
        self.trust_domain = trust_domain
        self.keys = KeySet.generate("ES256")
        self.directory = directory

    def workload(self, path: str) -> str:
        return f"spiffe://{self.trust_domain}/ns/{path}"

    def identity(self, path: str) -> WitFileSource:
        wit, key = WitIssuer(self.keys, trust_domain=self.trust_domain).issue_with_new_key(self.workload(path))
        where = self.directory / path.replace("/", "-")
        where.mkdir(parents=True)
        (where / "wit.jwt").write_text(wit)
        KeySet(key).save(where / "key.json")
        return WitFileSource(str(where / "wit.jwt"), str(where / "key.json"))

    def callers(self) -> CallerVerifier:
        return CallerVerifier(WitVerifier(self.keys, trust_domain=self.trust_domain))


@pytest.fixture
def domain(txtoken_kit: TxnTokenKit, tmp_path: Path) -> Domain:
    return Domain(txtoken_kit.trust_domain, tmp_path)


class LateApp:
    """An ASGI app built once its server's URL (its configured service URL, the WPT audience) is known."""

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def payments_app(
    kit: TxnTokenKit, domain: Domain, mode: str, service_url: str, *, required: bool = True, problems: bool = False
) -> FastAPI:
    """``mode`` ``dependency``: the dependencies verify (the caller before the Txn-Token, on every request when
    ``required``); ``middleware``: ``TxnTokenMiddleware`` with ``callers`` verifies and the dependencies read."""
    if mode == "dependency":
        caller = CallerSecurity(domain.callers(), service_urls=[service_url], required=required)
        txn_token = TxnTokenSecurity(kit.verifier, callers=caller)
    else:
        caller, txn_token = CallerSecurity(), TxnTokenSecurity()
    app = FastAPI(exception_handlers={TxnTokenHTTPException: problem_details} if problems else None)
    orders, shop = domain.workload("shop/sa/orders"), domain.workload("shop/*")

    @app.get("/whoami")
    async def whoami(
        request: Request,
        who: Annotated[VerifiedCaller, Security(caller)],
        txn: Annotated[VerifiedTxnToken, Security(txn_token)],
    ) -> dict[str, Any]:
        return {
            "caller": who.workload,
            "current": current_caller() is who,
            "state": request.state.caller is who,
            "txn": txn.txn,
            "current_txn": current_transaction() is txn,
        }

    @app.post("/charges")
    def charge(  # a def route, on the thread pool: the caller is current there too
        txn: Annotated[VerifiedTxnToken, Security(txn_token, scopes=["payments.charge"])],
        who: Annotated[VerifiedCaller, Security(caller, scopes=[orders])],
    ) -> dict[str, Any]:
        current = current_caller()
        return {"caller": who.workload, "current": current.workload if current else None, "sub": txn.sub}

    @app.get("/stock", dependencies=[Security(caller, scopes=[shop])])
    async def stock(txn: Annotated[VerifiedTxnToken, Security(txn_token)]) -> dict[str, Any]:
        current = current_caller()
        return {"caller": current.workload if current else None}

    @app.get("/open")
    async def open_route(txn: Annotated[VerifiedTxnToken, Security(txn_token)]) -> dict[str, Any]:
        current = current_caller()
        return {"caller": current.workload if current else None}

    if mode == "middleware":
        app.add_middleware(
            TxnTokenMiddleware,
            verifier=kit.verifier,
            callers=domain.callers(),
            service_urls=[service_url],
            caller_required=required,
            exempt_paths=docs_paths(app),
        )
    return app


def serve_payments(serve: Any, kit: TxnTokenKit, domain: Domain, mode: str, **options: Any) -> str:
    late = LateApp()
    server: RunningServer = serve(late, lifespan="off")
    late.app = payments_app(kit, domain, mode, server.url, **options)
    return server.url


def proof_headers(identity: WitFileSource, url: str, token: str) -> dict[str, str]:
    me = identity.get()
    return {
        "Txn-Token": token,
        WIT_HEADER: me.wit,
        WPT_HEADER: create_wpt(me.key, wit=me.wit, audience=url, txn_token=token),
    }


def refused(response: httpx.Response, status: int, code: str, *secrets: str) -> None:
    """The dependency's refusal (``{"detail": {...}}``) or the middleware's (flat; problem details for a WIT/WPT)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body.get("detail", body)["error"] == code
    assert response.headers["cache-control"] == "no-store"
    if "detail" not in body and status == 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert body["status"] == 400 and body["type"] == "about:blank"
    for secret in secrets:
        assert secret not in response.text


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_routes_get_the_caller_txn_token_auth_authenticated(
    serve: Any, txtoken_kit: TxnTokenKit, domain: Domain, mode: str
) -> None:
    url = serve_payments(serve, txtoken_kit, domain, mode)
    auth = TxnTokenAuth(trusted_hosts=["127.0.0.1"], identity=domain.identity("shop/sa/orders"))
    txn = txtoken_kit.verified(scope="payments.charge", sub="alice")
    with use_transaction(txn):
        async with httpx.AsyncClient(base_url=url, auth=auth, event_hooks=auth.async_event_hooks) as client:
            whoami = (await client.get("/whoami")).json()
            charged = await client.post("/charges")
            stock = await client.get("/stock")
    orders = domain.workload("shop/sa/orders")
    assert whoami == {"caller": orders, "current": True, "state": True, "txn": txn.txn, "current_txn": True}
    assert charged.status_code == 200, charged.text  # three dependencies, one verification (else: wpt_replayed)
    assert charged.json() == {"caller": orders, "current": orders, "sub": "alice"}
    assert stock.json() == {"caller": orders}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_missing_wit_or_wpt_is_refused_with_400_and_its_code(
    serve: Any, txtoken_kit: TxnTokenKit, domain: Domain, mode: str
) -> None:
    url = serve_payments(serve, txtoken_kit, domain, mode)
    token = txtoken_kit.mint(scope="payments.charge")
    wit = domain.identity("shop/sa/orders").get().wit
    async with httpx.AsyncClient(base_url=url) as client:
        refused(await client.get("/open", headers={"Txn-Token": token}), 400, "wit_missing", token)
        only_wit = await client.get("/whoami", headers={"Txn-Token": token, WIT_HEADER: wit})
    refused(only_wit, 400, "wpt_missing", token, wit)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_caller_the_route_does_not_allow_is_refused_with_403_caller_not_allowed(
    serve: Any, txtoken_kit: TxnTokenKit, domain: Domain, mode: str
) -> None:
    url = serve_payments(serve, txtoken_kit, domain, mode)
    inventory = TxnTokenAuth(trusted_hosts=["127.0.0.1"], identity=domain.identity("shop/sa/inventory"))
    outsider = TxnTokenAuth(trusted_hosts=["127.0.0.1"], identity=domain.identity("other/sa/batch"))
    with use_transaction(txtoken_kit.verified(scope="payments.charge")):
        async with httpx.AsyncClient(base_url=url, auth=inventory) as client:
            refused(await client.post("/charges"), 403, "caller_not_allowed")  # only orders, exactly
            assert (await client.get("/stock")).json() == {"caller": domain.workload("shop/sa/inventory")}
        async with httpx.AsyncClient(base_url=url, auth=outsider) as client:
            refused(await client.get("/stock"), 403, "caller_not_allowed")  # not below ns/shop/
            assert (await client.get("/whoami")).status_code == 200  # any authenticated caller


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_replayed_wpt_is_refused_with_400_wpt_replayed(
    serve: Any, txtoken_kit: TxnTokenKit, domain: Domain, mode: str
) -> None:
    url = serve_payments(serve, txtoken_kit, domain, mode)
    token = txtoken_kit.mint(scope="payments.charge")
    headers = proof_headers(domain.identity("shop/sa/orders"), f"{url}/charges", token)
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.post("/charges", headers=headers)).status_code == 200
        refused(await client.post("/charges", headers=headers), 400, "wpt_replayed", token, headers[WPT_HEADER])


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_per_route_callers_only_where_a_route_asks_for_one(
    serve: Any, txtoken_kit: TxnTokenKit, domain: Domain, mode: str
) -> None:
    """Callers not required for the whole app: a request carrying a WIT and WPT is checked, the others pass except
    where a route asks for a caller (the dependency verifying: ``wit_missing``; behind the middleware, which let the
    request through: ``caller_not_allowed``)."""
    url = serve_payments(serve, txtoken_kit, domain, mode, required=False)
    token = txtoken_kit.mint(scope="payments.charge")
    identity = domain.identity("shop/sa/orders")
    async with httpx.AsyncClient(base_url=url, headers={"Txn-Token": token}) as client:
        assert (await client.get("/open")).json() == {"caller": None}
        without = await client.get("/stock")
        carried = await client.get("/open", headers=proof_headers(identity, f"{url}/open", token))
        wrong_audience = await client.get("/open", headers=proof_headers(identity, f"{url}/charges", token))
    if mode == "dependency":
        refused(without, 400, "wit_missing", token)
    else:
        refused(without, 403, "caller_not_allowed", token)
    assert carried.json() == {"caller": domain.workload("shop/sa/orders")}  # carried: checked, and current
    refused(wrong_audience, 400, "wpt_aud_invalid", token)


def test_a_websocket_route_refuses_a_missing_caller_with_1008_and_the_code(
    txtoken_kit: TxnTokenKit, domain: Domain
) -> None:
    caller = CallerSecurity(domain.callers(), service_urls=["http://testserver"])
    app = FastAPI()

    @app.websocket("/feed")
    async def feed(websocket: WebSocket, who: Annotated[VerifiedCaller, Security(caller)]) -> None:
        await websocket.accept()
        await websocket.send_json({"caller": who.workload})
        await websocket.close()

    with (
        pytest.raises(WebSocketDisconnect) as refused_handshake,
        TestClient(app).websocket_connect("/feed", headers={"Txn-Token": txtoken_kit.mint()}),
    ):
        pass
    assert (refused_handshake.value.code, refused_handshake.value.reason) == (1008, "wit_missing")


@pytest.mark.anyio
async def test_problem_details_handler_answers_as_the_middleware_does(
    serve: Any, txtoken_kit: TxnTokenKit, domain: Domain
) -> None:
    from_dependency = serve_payments(serve, txtoken_kit, domain, "dependency", problems=True)
    from_middleware = serve_payments(serve, txtoken_kit, domain, "middleware")
    token = txtoken_kit.mint(scope="payments.charge")
    bodies = []
    for url in (from_dependency, from_middleware):
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/whoami", headers={"Txn-Token": token})
        refused(response, 400, "wit_missing", token)
        bodies.append((response.headers["content-type"], response.json()))
    assert bodies[0] == bodies[1]
    assert bodies[0][1]["title"] == "Bad Request"


def test_openapi_document_carries_both_wimse_headers_and_each_routes_callers(
    txtoken_kit: TxnTokenKit, domain: Domain
) -> None:
    app = payments_app(txtoken_kit, domain, "dependency", "https://payments.shop.example")
    document = TestClient(app).get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["WorkloadIdentityToken"] | {"description": ""} == {
        "type": "apiKey",
        "in": "header",
        "name": "Workload-Identity-Token",
        "description": "",
    }
    assert (schemes["WorkloadProofToken"]["in"], schemes["WorkloadProofToken"]["name"]) == (
        "header",
        "Workload-Proof-Token",
    )
    orders = domain.workload("shop/sa/orders")
    assert document["paths"]["/charges"]["post"]["security"] == [
        {"TxnToken": ["payments.charge"]},
        {"WorkloadIdentityToken": [orders]},
        {"WorkloadProofToken": [orders]},
    ]


def test_a_caller_verifier_needs_the_services_urls(domain: Domain) -> None:
    with pytest.raises(ConfigurationError, match="service_urls"):
        CallerSecurity(domain.callers())
