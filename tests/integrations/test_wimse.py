"""WIMSE over real servers and clients: httpx and gRPC send WIT + a fresh WPT, the ASGI middleware and the gRPC
server interceptors verify WIT → WPT → Txn-Token, expose the caller and let the policy require one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from txtoken import KeySet, current_transaction, use_transaction
from txtoken.context import current_caller
from txtoken.credentials import WitFileSource
from txtoken.policy import Policy, Rule
from txtoken.wimse import (
    WIT_HEADER,
    WPT_HEADER,
    CallerVerifier,
    WitIssuer,
    WitVerifier,
    WptVerifier,
    create_wpt,
    grpc_audience,
    token_hash,
)
from txtoken_asgi import TxnTokenMiddleware
from txtoken_grpc import AioTxnTokenServerInterceptor, TxnTokenClientInterceptor, TxnTokenServerInterceptor
from txtoken_grpc.client import aio_client_interceptors
from txtoken_httpx import TxnTokenAuth

from ..conftest import RunningServer
from .conftest import TRUST_DOMAIN, Issuer
from .grpc_services import UNARY, ServerKind, decode, encode, running_server

Serve = Callable[..., RunningServer]
ORDERS = "spiffe://trade.example/orders"
INVENTORY = "spiffe://trade.example/inventory"
AUTHORITY = "echo.trade.example"


class Domain:
    """The trust domain's WIT key, workloads' identities (as files an agent wrote), and receivers' verifiers."""

    def __init__(self, directory: Path) -> None:
        self.keys = KeySet.generate("ES256")
        self.directory = directory

    def identity(self, workload: str) -> WitFileSource:
        wit, key = WitIssuer(self.keys, trust_domain=TRUST_DOMAIN).issue_with_new_key(workload)
        where = self.directory / workload.rsplit("/", 1)[1]
        where.mkdir(parents=True, exist_ok=True)
        (where / "wit.jwt").write_text(wit)
        KeySet(key).save(where / "key.json")
        return WitFileSource(str(where / "wit.jwt"), str(where / "key.json"))

    def callers(self) -> CallerVerifier:
        return CallerVerifier(WitVerifier(self.keys, trust_domain=TRUST_DOMAIN), WptVerifier())


@pytest.fixture
def domain(tmp_path: Path) -> Domain:
    return Domain(tmp_path)


class LateApp:
    """An ASGI app built once its server's URL (its configured service URL, the WPT audience) is known."""

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


async def report(request: Request) -> JSONResponse:
    caller = current_caller()
    txn = current_transaction()
    return JSONResponse(
        {
            "caller": caller.workload if caller else None,
            "state": request.state.caller.workload if caller else None,
            "txn": txn.txn if txn else None,
            "headers": {name: request.headers.get(name) for name in ("txn-token", WIT_HEADER, WPT_HEADER)},
        }
    )


async def bounce(request: Request) -> RedirectResponse:
    return RedirectResponse(request.query_params["to"], status_code=307)


def receiver(serve: Serve, issuer: Issuer, domain: Domain, *, policy: Policy | None = None, **options: Any) -> str:
    late = LateApp()
    server = serve(late, lifespan="off")
    routes = [Route("/report", report, methods=["GET", "POST"]), Route("/bounce", bounce, methods=["GET"])]
    options.setdefault("service_urls", [server.url])
    middleware = Middleware(
        TxnTokenMiddleware, verifier=issuer.verifier(), policy=policy, callers=domain.callers(), **options
    )
    late.app = Starlette(routes=routes, middleware=[middleware])
    return server.url


def proof_headers(identity: WitFileSource, url: str, token: str | None, **extra: str) -> dict[str, str]:
    me = identity.get()
    headers = {WIT_HEADER: me.wit, WPT_HEADER: create_wpt(me.key, wit=me.wit, audience=url, txn_token=token)}
    if token is not None:
        headers["Txn-Token"] = token
    return {**headers, **extra}


def assert_problem(response: httpx.Response, code: str, *secrets: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["error"] == code and body["status"] == 400 and body["title"] == "Bad Request"
    for secret in secrets:
        assert secret not in response.text


# -- outbound httpx + inbound ASGI ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_txn_token_auth_sends_wit_and_a_fresh_bound_wpt_and_the_receiver_sees_the_caller(
    serve: Serve, issuer: Issuer, domain: Domain
) -> None:
    url = receiver(serve, issuer, domain)
    identity = domain.identity(ORDERS)
    auth = TxnTokenAuth(trusted_hosts=["127.0.0.1"], identity=identity)
    txn = issuer.verified()
    with use_transaction(txn):
        async with httpx.AsyncClient(auth=auth, event_hooks=auth.async_event_hooks) as client:
            first = (await client.get(f"{url}/report", params={"page": "2"})).json()
            second = (await client.get(f"{url}/report")).json()
        with httpx.Client(auth=auth, event_hooks=auth.event_hooks) as sync_client:
            third = sync_client.post(
                f"{url}/report", headers={"Authorization": "Bearer at-1", WPT_HEADER: "caller-set"}
            ).json()
    for seen in (first, second, third):
        assert seen["caller"] == seen["state"] == ORDERS and seen["txn"] == txn.txn
        assert seen["headers"]["txn-token"] == txn.token and seen["headers"][WIT_HEADER] == identity.get().wit
    wpts = [seen["headers"][WPT_HEADER] for seen in (first, second, third)]
    assert len(set(wpts)) == 3  # a fresh WPT per request
    claims = [json.loads(base64url(wpt.split(".")[1])) for wpt in wpts]
    assert claims[0]["aud"] == f"{url}/report"  # no query
    assert all(c["tth"] == token_hash(txn.token) and c["wth"] == token_hash(identity.get().wit) for c in claims)
    assert claims[2]["ath"] == token_hash("at-1") and "ath" not in claims[0]


def base64url(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@pytest.mark.anyio
async def test_no_wit_or_wpt_goes_to_an_untrusted_host_or_across_a_redirect(
    serve: Serve, issuer: Issuer, domain: Domain
) -> None:
    url = receiver(serve, issuer, domain)
    other = receiver(serve, issuer, domain)
    auth = TxnTokenAuth(trusted_hosts=["127.0.0.1"], identity=domain.identity(ORDERS))
    with use_transaction(issuer.verified()):
        async with httpx.AsyncClient(auth=auth, event_hooks=auth.async_event_hooks, follow_redirects=True) as client:
            untrusted = await client.get(url.replace("127.0.0.1", "localhost") + "/report")
            across = await client.get(f"{url}/bounce", params={"to": f"{other}/report"})
            within = await client.get(f"{url}/bounce", params={"to": f"{url}/report?after=redirect"})
    assert_problem(untrusted, "wit_missing")  # nothing was sent to "localhost"
    assert_problem(across, "wit_missing")  # stripped on the way to another origin
    assert within.status_code == 200 and within.json()["caller"] == ORDERS  # re-proved for the new target URI


@pytest.mark.anyio
async def test_the_wpt_audience_comes_from_configuration_never_from_host(
    serve: Serve, issuer: Issuer, domain: Domain
) -> None:
    url = receiver(serve, issuer, domain, service_urls=["https://orders.trade.example"])
    identity, token = domain.identity(INVENTORY), issuer.mint()
    async with httpx.AsyncClient() as client:
        by_host = await client.get(
            f"{url}/report",
            headers={**proof_headers(identity, "https://evil.example/report", token), "Host": "evil.example"},
        )
        forwarded = await client.get(
            f"{url}/report",
            headers={
                **proof_headers(identity, "https://evil.example/report", token),
                "X-Forwarded-Host": "evil.example",
            },
        )
        configured = await client.get(
            f"{url}/report", headers=proof_headers(identity, "https://orders.trade.example/report", token)
        )
    assert_problem(by_host, "wpt_aud_invalid")
    assert_problem(forwarded, "wpt_aud_invalid")
    assert configured.status_code == 200 and configured.json()["caller"] == INVENTORY


@pytest.mark.anyio
async def test_receiver_refusals_are_400_problem_details_in_the_documented_order(
    serve: Serve, issuer: Issuer, domain: Domain
) -> None:
    url = receiver(serve, issuer, domain)
    identity, token = domain.identity(ORDERS), issuer.mint()
    good = proof_headers(identity, f"{url}/report", token)
    async with httpx.AsyncClient() as client:
        no_wit = await client.get(f"{url}/report", headers={"Txn-Token": token})
        no_wpt = await client.get(f"{url}/report", headers={"Txn-Token": token, WIT_HEADER: good[WIT_HEADER]})
        two_wpts = await client.get(f"{url}/report", headers=[*good.items(), (WPT_HEADER, good[WPT_HEADER])])
        other_token = await client.get(f"{url}/report", headers={**good, "Txn-Token": issuer.mint()})
        accepted = await client.get(f"{url}/report", headers=good)
        replayed = await client.get(f"{url}/report", headers=good)
        bad_txn = proof_headers(identity, f"{url}/report", issuer.expired())
        expired_txn = await client.get(f"{url}/report", headers=bad_txn)
    assert_problem(no_wit, "wit_missing", token)
    assert_problem(no_wpt, "wpt_missing", token, good[WIT_HEADER])
    assert_problem(two_wpts, "wpt_duplicated")
    assert_problem(other_token, "wpt_tth_mismatch")  # a WPT made for another Txn-Token
    assert accepted.status_code == 200
    assert_problem(replayed, "wpt_replayed", good[WPT_HEADER])
    # WIT and WPT pass; then the Txn-Token is checked, with its own 401.
    assert expired_txn.status_code == 401 and expired_txn.json()["error"] == "token_expired"


@pytest.mark.anyio
async def test_per_route_callers_in_the_policy(serve: Serve, issuer: Issuer, domain: Domain) -> None:
    policy = Policy(
        [
            Rule("POST /report", scopes=["trade"], callers=[INVENTORY]),
            Rule("GET /report", callers=["spiffe://trade.example/*"]),
            Rule("GET /bounce"),
        ]
    )
    url = receiver(serve, issuer, domain, policy=policy, caller_required=False)
    orders, inventory, token = domain.identity(ORDERS), domain.identity(INVENTORY), issuer.mint()
    async with httpx.AsyncClient() as client:
        allowed = await client.post(f"{url}/report", headers=proof_headers(inventory, f"{url}/report", token))
        wrong_caller = await client.post(f"{url}/report", headers=proof_headers(orders, f"{url}/report", token))
        pattern = await client.get(f"{url}/report", headers=proof_headers(orders, f"{url}/report", token))
        no_caller = await client.get(f"{url}/report", headers={"Txn-Token": token})
        open_route = await client.get(f"{url}/bounce", params={"to": "/x"}, headers={"Txn-Token": token})
        bad_proof = await client.get(
            f"{url}/bounce", params={"to": "/x"}, headers={"Txn-Token": token, WIT_HEADER: "not-a-wit"}
        )
    assert allowed.status_code == 200 and allowed.json()["caller"] == INVENTORY
    assert wrong_caller.status_code == 403 and wrong_caller.json()["error"] == "caller_not_allowed"
    assert pattern.status_code == 200 and pattern.json()["caller"] == ORDERS
    assert no_caller.status_code == 403 and no_caller.json()["error"] == "caller_not_allowed"
    assert open_route.status_code == 307  # no caller required on this route
    assert_problem(bad_proof, "wit_invalid")  # a presented WIT must verify even where none is required


# -- gRPC ------------------------------------------------------------------------------------------------------------


def grpc_interceptor(kind: ServerKind, issuer: Issuer, domain: Domain, **options: Any) -> Any:
    cls = TxnTokenServerInterceptor if kind == "sync" else AioTxnTokenServerInterceptor
    return cls(issuer.verifier(), callers=domain.callers(), authorities=[AUTHORITY], **options)


async def unary(target: str, metadata: list[tuple[str, str]]) -> Any:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(UNARY, request_serializer=encode, response_deserializer=decode)
        return await call({"x": 1}, metadata=metadata, timeout=10)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sync", "aio"])
async def test_grpc_clients_send_wit_and_wpt_and_servers_verify_them(
    issuer: Issuer, domain: Domain, kind: ServerKind
) -> None:
    identity = domain.identity(ORDERS)
    txn = issuer.verified()
    async with running_server(kind, [grpc_interceptor(kind, issuer, domain)]) as target:

        def sync_call() -> Any:
            with grpc.insecure_channel(target) as sync_channel:
                intercepted = grpc.intercept_channel(
                    sync_channel, TxnTokenClientInterceptor(identity=identity, authority=AUTHORITY)
                )
                call = intercepted.unary_unary(UNARY, request_serializer=encode, response_deserializer=decode)
                return call({"x": 1}, timeout=10)

        with use_transaction(txn):
            from_sync = await asyncio.to_thread(sync_call)  # a blocking client, off the aio server's loop
            interceptors = aio_client_interceptors(identity=identity, authority=AUTHORITY)
            async with grpc.aio.insecure_channel(target, interceptors=interceptors) as channel:
                aio_call = channel.unary_unary(UNARY, request_serializer=encode, response_deserializer=decode)
                from_aio = await aio_call({"x": 1}, timeout=10)
    assert from_sync["txn"] == from_aio["txn"] == txn.txn


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sync", "aio"])
async def test_grpc_refusals_name_the_wit_or_wpt_check(issuer: Issuer, domain: Domain, kind: ServerKind) -> None:
    identity = domain.identity(ORDERS)
    me = identity.get()
    token = issuer.mint()

    def proof(audience: str) -> list[tuple[str, str]]:
        wpt = create_wpt(me.key, wit=me.wit, audience=audience, txn_token=token)
        return [("txn-token", token), ("workload-identity-token", me.wit), ("workload-proof-token", wpt)]

    async with running_server(kind, [grpc_interceptor(kind, issuer, domain)]) as target:
        outcomes = {}
        for name, metadata in {
            "missing": [("txn-token", token)],
            "other method": proof(grpc_audience(AUTHORITY, "/test.Echo/Other")),
            "other authority": proof(grpc_audience("other.trade.example", UNARY)),
        }.items():
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await unary(target, metadata)
            outcomes[name] = (refused.value.code(), (refused.value.details() or "").split(":")[0])
        good = proof(grpc_audience(AUTHORITY, UNARY))
        assert (await unary(target, good))["txn"]
        with pytest.raises(grpc.aio.AioRpcError) as replayed:
            await unary(target, good)
    unauthenticated = grpc.StatusCode.UNAUTHENTICATED
    assert outcomes == {
        "missing": (unauthenticated, "wit_missing"),
        "other method": (unauthenticated, "wpt_aud_invalid"),
        "other authority": (unauthenticated, "wpt_aud_invalid"),
    }
    assert replayed.value.code() == unauthenticated
    assert ("txtoken-error", "wpt_replayed") in tuple(replayed.value.trailing_metadata() or ())
    assert me.wit not in (replayed.value.details() or "")


@pytest.mark.anyio
async def test_grpc_policy_callers_and_the_caller_in_the_handler(issuer: Issuer, domain: Domain) -> None:
    policy = Policy([Rule(UNARY, callers=[INVENTORY])])
    seen: list[str | None] = []

    async def who(request: Any, context: Any) -> Any:
        caller = current_caller()
        seen.append(caller.workload if caller else None)
        return {"ok": True}

    handler = grpc.method_handlers_generic_handler(
        "test.Echo",
        {"Unary": grpc.unary_unary_rpc_method_handler(who, request_deserializer=decode, response_serializer=encode)},
    )
    interceptor = grpc_interceptor("aio", issuer, domain, policy=policy)
    async with running_server("aio", [interceptor], [handler]) as target:
        with use_transaction(issuer.verified()):
            for workload in (INVENTORY, ORDERS):
                interceptors = aio_client_interceptors(identity=domain.identity(workload), authority=AUTHORITY)
                async with grpc.aio.insecure_channel(target, interceptors=interceptors) as channel:
                    call = channel.unary_unary(UNARY, request_serializer=encode, response_deserializer=decode)
                    if workload == INVENTORY:
                        assert await call({}, timeout=10) == {"ok": True}
                    else:
                        with pytest.raises(grpc.aio.AioRpcError) as refused:
                            await call({}, timeout=10)
    assert seen == [INVENTORY]
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (refused.value.details() or "").startswith("caller_not_allowed: ")


@pytest.mark.anyio
async def test_grpc_ath_covers_an_authorization_bearer(issuer: Issuer, domain: Domain) -> None:
    identity = domain.identity(ORDERS)
    me = identity.get()
    token = issuer.mint()
    async with running_server("aio", [grpc_interceptor("aio", issuer, domain)]) as target:
        with use_transaction(issuer.verifier().verify(token)):
            interceptors = aio_client_interceptors(identity=identity, authority=AUTHORITY)
            async with grpc.aio.insecure_channel(target, interceptors=interceptors) as channel:
                call = channel.unary_unary(UNARY, request_serializer=encode, response_deserializer=decode)
                bound = await call({}, metadata=(("authorization", "Bearer at-1"),), timeout=10)
        unbound = create_wpt(me.key, wit=me.wit, audience=grpc_audience(AUTHORITY, UNARY), txn_token=token)
        metadata = [
            ("txn-token", token),
            ("workload-identity-token", me.wit),
            ("workload-proof-token", unbound),
            ("authorization", "Bearer at-1"),
        ]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await unary(target, metadata)
    assert bound["txn"]
    assert (refused.value.details() or "").startswith("wpt_ath_mismatch: ")
