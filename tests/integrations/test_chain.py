"""A real call chain: uvicorn ASGI → httpx → ASGI → gRPC aio → gRPC sync → httpx → ASGI, augmented on the way.

    gateway (the test: exchange at the TTS) ─httpx─▶ orders (ASGI) ─httpx─▶ checkout (ASGI, sync endpoint)
      ─gRPC sync client─▶ inventory (gRPC aio server) ── augment: replacement from the TTS, +tctx, narrower scope ──▶
      ─gRPC aio client─▶ warehouse (gRPC sync server) ─httpx─▶ payments (ASGI, two replicas sharing Redis)

The TTS is the real one (``txtoken.service``) served by uvicorn, with a gateway and an inventory workload that
authenticate with registered keys; every hop has its own verifier on the TTS's JWKS URL and reports what its handler
saw; the answer travels back up the chain.

WIMSE at every hop: each workload has a WIT (the gateway and inventory from the TTS's ``/wit``, the others from files
an agent wrote, signed with the same WIT key), every call carries it with a fresh WPT, and every hop verifies WIT →
WPT → Txn-Token against the TTS's WIT JWKS and reports its caller. The payments replicas share their WPT ``jti``
store in a real Redis: a WPT accepted by one replica is a replay at the other.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from txtoken import KeySet, RemoteJwksKeySource, TxnTokenVerifier, require_transaction
from txtoken.augment import aaugment
from txtoken.claims import TOKEN_TYPE_UNSIGNED_JSON
from txtoken.client import AsyncTokenServiceClient, TokenServiceClient
from txtoken.context import current_caller
from txtoken.credentials import TokenServiceWitSource, WitFileSource, WorkloadIdentitySource
from txtoken.keys import SigningKey
from txtoken.mint import encode_jws
from txtoken.policy import Policy, Rule
from txtoken.replay import ReplayStore
from txtoken.replay_redis import RedisReplayStore
from txtoken.service import TokenService, create_app, load_settings
from txtoken.wimse import WIT_HEADER, WPT_HEADER, CallerVerifier, WitIssuer, WitVerifier, WptVerifier, create_wpt
from txtoken_asgi import TxnTokenMiddleware
from txtoken_grpc import (
    AioTxnTokenServerInterceptor,
    TxnTokenClientInterceptor,
    TxnTokenServerInterceptor,
    aio_client_interceptors,
)
from txtoken_httpx import TxnTokenAuth

from ..conftest import RedisServer, RunningServer
from .conftest import TRUST_DOMAIN
from .grpc_services import decode, encode

IDENTIFIER = "https://tts.trade.example"
GATEWAY = "spiffe://trade.example/gateway"
INVENTORY = "spiffe://trade.example/inventory"
HOPS = ("orders", "checkout", "inventory", "inventory+augmented", "warehouse", "payments")
AUGMENTED = {"reserved": 100, "warehouse": "w1"}
WORKLOADS = {hop: f"spiffe://trade.example/{hop}" for hop in ("orders", "checkout", "warehouse", "payments")}
CALLERS = {
    "orders": GATEWAY,
    "checkout": WORKLOADS["orders"],
    "inventory": WORKLOADS["checkout"],
    "inventory+augmented": WORKLOADS["checkout"],
    "warehouse": INVENTORY,
    "payments": WORKLOADS["warehouse"],
}
#: The gRPC services' authorities (the WPT audience is https://<authority>/<package.Service>/<Method>).
AUTHORITY = {"inventory": "inventory.trade.example", "warehouse": "warehouse.trade.example"}


def seen(hop: str) -> dict[str, Any]:
    txn = require_transaction()
    caller = current_caller()
    return {
        "hop": hop,
        "caller": caller.workload if caller else None,
        "txn": txn.txn,
        "sub": txn.sub,
        "scope": txn.claims.scope,
        "req_wl": txn.req_wl,
        "tctx": dict(txn.tctx),
        "token": hashlib.sha256(txn.token.encode()).hexdigest()[:16],
    }


def start_tts(serve: Callable[..., RunningServer], key_dir: Path) -> tuple[str, dict[str, SigningKey]]:
    """The real TTS: a gateway that exchanges asserted users, an inventory service that may replace and add tctx."""
    KeySet.generate().save(key_dir / "keys.json")
    KeySet.generate().save(key_dir / "wit" / "keys.json")
    workload_keys = {GATEWAY: SigningKey.generate(), INVENTORY: SigningKey.generate()}

    def workload(workload_id: str, **policy: Any) -> dict[str, Any]:
        jwks = {"keys": [workload_keys[workload_id].verification_key.to_jwk()]}
        return {"id": workload_id, "authn": [{"method": "key", "jwks": jwks}], "scopes": ["trade", "read"], **policy}

    settings = load_settings(
        None,
        mode="production",
        identifier=IDENTIFIER,
        trust_domains=[TRUST_DOMAIN],
        keys={"dir": str(key_dir)},
        wimse={"trust_domain": TRUST_DOMAIN, "keys_dir": str(key_dir / "wit")},
        workloads=[
            workload(
                GATEWAY,
                subject_token_types=["unsigned_json"],
                asserted_subject_scopes=["trade", "read"],
                tctx=["action", "symbol"],
            ),
            workload(INVENTORY, subject_token_types=["txn_token"], tctx=list(AUGMENTED)),
        ],
    )
    return serve(create_app(TokenService.build(settings)), proxy_headers=False).url, workload_keys


def assertion_for(workload_id: str, key: SigningKey) -> Callable[[], str]:
    """RFC 7523 client assertions signed with the workload's registered key (a credential source does this)."""

    def sign() -> str:
        now = int(time.time())
        claims = {"iss": workload_id, "sub": workload_id, "aud": IDENTIFIER, "iat": now, "exp": now + 60}
        return encode_jws({**claims, "jti": str(uuid.uuid4())}, key, typ="JWT")

    return sign


def agent_identity(directory: Path, workload_id: str, wit_keys: KeySet) -> WitFileSource:
    """What a SPIFFE-style agent delivers: a WIT file and a key file, signed with the trust domain's WIT key."""
    wit, key = WitIssuer(wit_keys, trust_domain=TRUST_DOMAIN, issuer=IDENTIFIER).issue_with_new_key(workload_id)
    directory.mkdir(parents=True)
    (directory / "wit.jwt").write_text(wit + "\n")
    KeySet(key).save(directory / "key.json")
    return WitFileSource(str(directory / "wit.jwt"), str(directory / "key.json"))


class LateApp:
    """An ASGI app built once its server's URL is known (the URL is the WPT audience it is configured with); at
    shutdown it runs ``on_shutdown`` (closing a replay store's connections on the server's own loop)."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None
        self.on_shutdown: list[Callable[[], Awaitable[None]]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            assert self.app is not None
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for close in self.on_shutdown:
                    await close()
                await send({"type": "lifespan.shutdown.complete"})
                return


@pytest.mark.anyio
async def test_context_travels_the_whole_chain_and_each_hop_verifies_its_own(
    serve: Callable[..., RunningServer], tmp_path: Path, redis_server: RedisServer
) -> None:
    tts_url, workload_keys = start_tts(serve, tmp_path)

    def hop_verifier() -> TxnTokenVerifier:
        jwks = RemoteJwksKeySource(f"{tts_url}/.well-known/jwks.json", allow_http=True)
        return TxnTokenVerifier(jwks, trust_domain=TRUST_DOMAIN, issuer=IDENTIFIER)

    def caller_verifier(replay_store: ReplayStore | None = None) -> CallerVerifier:
        anchors = RemoteJwksKeySource(f"{tts_url}/.well-known/wit-jwks.json", allow_http=True)
        return CallerVerifier(
            WitVerifier(anchors, trust_domain=TRUST_DOMAIN, issuers=[IDENTIFIER]),
            WptVerifier(replay_store=replay_store),
        )

    verifiers = {hop: hop_verifier() for hop in ("orders", "checkout", "inventory", "warehouse", "payments")}
    wit_keys = KeySet.load(tmp_path / "wit" / "keys.json")
    identities: dict[str, WorkloadIdentitySource] = {
        hop: agent_identity(tmp_path / "agent" / hop, workload_id, wit_keys) for hop, workload_id in WORKLOADS.items()
    }
    for hop, workload_id in (("gateway", GATEWAY), ("inventory", INVENTORY)):
        identities[hop] = TokenServiceWitSource(
            f"{tts_url}/wit",
            credential=assertion_for(workload_id, workload_keys[workload_id]),
            audience=IDENTIFIER,
            allow_http=True,
        )

    def auth(hop: str) -> TxnTokenAuth:
        return TxnTokenAuth(trusted_hosts=["127.0.0.1"], identity=identities[hop])

    # payments: the last hop, ASGI, two replicas sharing their WPT jti store in Redis.
    proofs: list[dict[str, str]] = []

    async def pay(request: Request) -> JSONResponse:
        proofs.append({name: request.headers[name] for name in ("Txn-Token", WIT_HEADER, WPT_HEADER)})
        return JSONResponse({"hops": [seen("payments")]})

    payment_rule = Rule("POST /pay", bind={"query.qty": "reserved"}, callers=[WORKLOADS["warehouse"]])
    replay_prefix = f"chain:{uuid.uuid4().hex}:"
    stores = [RedisReplayStore(redis_server.url, prefix=replay_prefix) for _ in range(2)]
    late_replicas = [LateApp() for _ in stores]
    replicas = [serve(late) for late in late_replicas]
    payments = replicas[0]  # the service URL both replicas answer for (a load balancer's, in a deployment)
    for late, store in zip(late_replicas, stores, strict=True):
        late.app = asgi("payments", pay, verifiers["payments"], payment_rule, caller_verifier(store), payments.url)
        late.on_shutdown.append(store.aclose)

    # warehouse: gRPC sync server; calls payments with a sync httpx client.
    def pick(request: Any, context: grpc.ServicerContext) -> Any:
        warehouse_auth = auth("warehouse")
        with httpx.Client(auth=warehouse_auth, event_hooks=warehouse_auth.event_hooks) as client:
            after = client.post(f"{payments.url}/pay", params={"qty": request["qty"]}).json()
        return {"hops": [seen("warehouse"), *after["hops"]]}

    warehouse_interceptor = TxnTokenServerInterceptor(
        verifiers["warehouse"], callers=caller_verifier(), authorities=[AUTHORITY["warehouse"]]
    )
    warehouse = grpc.server(ThreadPoolExecutor(4), interceptors=[warehouse_interceptor])
    warehouse.add_generic_rpc_handlers([service("Warehouse", "Pick", pick)])
    warehouse_target = f"127.0.0.1:{warehouse.add_insecure_port('127.0.0.1:0')}"
    warehouse.start()

    # inventory: gRPC aio server; augments at the TTS, then calls warehouse with an aio channel.
    async def reserve(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        before = seen("inventory")
        tts_client = AsyncTokenServiceClient(
            f"{tts_url}/token", credential=assertion_for(INVENTORY, workload_keys[INVENTORY]), trust_domain=TRUST_DOMAIN
        )
        async with tts_client, aaugment(tts_client, verifiers["inventory"], scope="trade", request_details=AUGMENTED):
            inside = seen("inventory+augmented")
            interceptors = aio_client_interceptors(identity=identities["inventory"], authority=AUTHORITY["warehouse"])
            async with grpc.aio.insecure_channel(warehouse_target, interceptors=interceptors) as channel:
                pick_call = channel.unary_unary(
                    "/chain.Warehouse/Pick", request_serializer=encode, response_deserializer=decode
                )
                after = await pick_call({"qty": request["qty"]}, timeout=10)
        return {"hops": [before, inside, *after["hops"]]}

    inventory_policy = Policy([Rule("/chain.Inventory/Reserve", scopes=["trade"], bind={"message.symbol": "symbol"})])
    inventory = grpc.aio.server(
        interceptors=[
            AioTxnTokenServerInterceptor(
                verifiers["inventory"],
                policy=inventory_policy,
                callers=caller_verifier(),
                authorities=[AUTHORITY["inventory"]],
            )
        ]
    )
    inventory.add_generic_rpc_handlers([service("Inventory", "Reserve", reserve)])
    inventory_target = f"127.0.0.1:{inventory.add_insecure_port('127.0.0.1:0')}"
    await inventory.start()

    # checkout: ASGI with a sync endpoint (thread pool); calls inventory with a sync gRPC channel.
    def checkout_handler(request: Request) -> JSONResponse:
        with grpc.insecure_channel(inventory_target) as channel:
            interceptor = TxnTokenClientInterceptor(identity=identities["checkout"], authority=AUTHORITY["inventory"])
            stub = grpc.intercept_channel(channel, interceptor)
            reserve_call = stub.unary_unary(
                "/chain.Inventory/Reserve", request_serializer=encode, response_deserializer=decode
            )
            after = reserve_call({"symbol": request.path_params["symbol"], "qty": 100}, timeout=10)
        return JSONResponse({"hops": [seen("checkout"), *after["hops"]]})

    late_checkout = LateApp()
    checkout = serve(late_checkout)
    late_checkout.app = asgi(
        "checkout",
        checkout_handler,
        verifiers["checkout"],
        Rule("POST /checkout/{symbol}", bind={"path.symbol": "symbol"}, callers=["spiffe://trade.example/*"]),
        caller_verifier(),
        checkout.url,
    )

    # orders: the first hop, ASGI with an async endpoint; calls checkout with an async httpx client.
    async def order(request: Request) -> JSONResponse:
        orders_auth = auth("orders")
        async with httpx.AsyncClient(auth=orders_auth, event_hooks=orders_auth.async_event_hooks, timeout=20) as client:
            after = (await client.post(f"{checkout.url}/checkout/MSFT")).json()
        return JSONResponse({"hops": [seen("orders"), *after["hops"]]})

    late_orders = LateApp()
    orders = serve(late_orders)
    late_orders.app = asgi("orders", order, verifiers["orders"], None, caller_verifier(), orders.url)

    gateway = TokenServiceClient(
        f"{tts_url}/token", credential=assertion_for(GATEWAY, workload_keys[GATEWAY]), trust_domain=TRUST_DOMAIN
    )
    with gateway:
        token = gateway.exchange(
            subject_token=json.dumps({"sub": "alice"}),
            subject_token_type=TOKEN_TYPE_UNSIGNED_JSON,
            scope="trade read",
            request_details={"action": "buy", "symbol": "MSFT"},
        ).access_token
    gateway_identity = await identities["gateway"].aget()
    wpt = create_wpt(gateway_identity.key, wit=gateway_identity.wit, audience=f"{orders.url}/order", txn_token=token)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            headers = {"Txn-Token": token, WIT_HEADER: gateway_identity.wit, WPT_HEADER: wpt}
            response = await client.post(f"{orders.url}/order", headers=headers)
            # What the binding stops: the payments call's proof, replayed to either replica, and the Txn-Token
            # alone (a bearer token read from a log) without the calling workload's WIT and key.
            replays = [
                await client.post(f"{replica.url}/pay", params={"qty": "100"}, headers=proofs[0])
                for replica in reversed(replicas)
            ]
            bare = await client.post(f"{replicas[1].url}/pay", params={"qty": "100"}, headers={"Txn-Token": token})
    finally:
        await inventory.stop(None)
        warehouse.stop(None)
    assert response.status_code == 200, response.text
    hops = {hop["hop"]: hop for hop in response.json()["hops"]}
    assert tuple(hops) == HOPS
    assert {hop: record["caller"] for hop, record in hops.items()} == CALLERS
    for replay in replays:
        assert replay.status_code == 400 and replay.json()["error"] == "wpt_replayed", replay.text
        assert replay.headers["content-type"] == "application/problem+json"
    assert bare.status_code == 400 and bare.json()["error"] == "wit_missing"

    original = {"action": "buy", "symbol": "MSFT"}
    first_token = hashlib.sha256(token.encode()).hexdigest()[:16]
    last = hops["payments"]
    assert last["txn"] == hops["orders"]["txn"] and last["sub"] == "alice"
    assert last["tctx"] == {**original, **AUGMENTED}
    for hop in ("orders", "checkout", "inventory"):
        assert hops[hop] | {"hop": None, "caller": None} == {
            "hop": None,
            "caller": None,
            "txn": last["txn"],
            "sub": "alice",
            "scope": "trade read",
            "req_wl": GATEWAY,
            "tctx": original,
            "token": first_token,  # forwarded exactly as received
        }
    for hop in ("inventory+augmented", "warehouse", "payments"):
        assert hops[hop] | {"hop": None, "caller": None} == {
            "hop": None,
            "caller": None,
            "txn": last["txn"],
            "sub": "alice",
            "scope": "trade",
            "req_wl": INVENTORY,
            "tctx": {**original, **AUGMENTED},
            "token": last["token"],  # the replacement, exactly as the TTS issued it
        }
    assert last["token"] != first_token
    # Each hop verified with its own verifier: the token as received, or the replacement (inventory verified both).
    assert {hop: len(v.cache or ()) for hop, v in verifiers.items()} == {
        "orders": 1,
        "checkout": 1,
        "inventory": 2,
        "warehouse": 1,
        "payments": 1,
    }


def asgi(
    name: str,
    endpoint: Callable[..., Any],
    verifier: TxnTokenVerifier,
    rule: Rule | None,
    callers: CallerVerifier,
    url: str,
) -> Starlette:
    route = {"orders": "/order", "checkout": "/checkout/{symbol}", "payments": "/pay"}[name]
    policy = Policy([rule]) if rule else None
    middleware = Middleware(TxnTokenMiddleware, verifier=verifier, policy=policy, callers=callers, service_urls=[url])
    return Starlette(routes=[Route(route, endpoint, methods=["POST"])], middleware=[middleware])


def service(name: str, method: str, behavior: Callable[..., Any]) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        f"chain.{name}",
        {
            method: grpc.unary_unary_rpc_method_handler(
                behavior, request_deserializer=decode, response_serializer=encode
            )
        },
    )
