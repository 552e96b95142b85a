"""A real call chain: uvicorn ASGI → httpx → ASGI → gRPC aio → gRPC sync → httpx → ASGI, augmented on the way.

    gateway (the test: exchange at the TTS) ─httpx─▶ orders (ASGI) ─httpx─▶ checkout (ASGI, sync endpoint)
      ─gRPC sync client─▶ inventory (gRPC aio server) ── augment: replacement from the TTS, +tctx, narrower scope ──▶
      ─gRPC aio client─▶ warehouse (gRPC sync server) ─httpx─▶ payments (ASGI)

The TTS is the real one (``txtoken.service``) served by uvicorn, with a gateway and an inventory workload that
authenticate with registered keys; every hop has its own verifier on the TTS's JWKS URL and reports what its handler
saw; the answer travels back up the chain.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
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

from txtoken import KeySet, RemoteJwksKeySource, TxnTokenVerifier, require_transaction
from txtoken.augment import aaugment
from txtoken.claims import TOKEN_TYPE_UNSIGNED_JSON
from txtoken.client import AsyncTokenServiceClient, TokenServiceClient
from txtoken.keys import SigningKey
from txtoken.mint import encode_jws
from txtoken.policy import Policy, Rule
from txtoken.service import TokenService, create_app, load_settings
from txtoken_asgi import TxnTokenMiddleware
from txtoken_grpc import (
    AioTxnTokenServerInterceptor,
    TxnTokenClientInterceptor,
    TxnTokenServerInterceptor,
    aio_client_interceptors,
)
from txtoken_httpx import TxnTokenAuth

from ..conftest import RunningServer
from .conftest import TRUST_DOMAIN
from .grpc_services import decode, encode

IDENTIFIER = "https://tts.trade.example"
GATEWAY = "spiffe://trade.example/gateway"
INVENTORY = "spiffe://trade.example/inventory"
HOPS = ("orders", "checkout", "inventory", "inventory+augmented", "warehouse", "payments")
AUGMENTED = {"reserved": 100, "warehouse": "w1"}


def seen(hop: str) -> dict[str, Any]:
    txn = require_transaction()
    return {
        "hop": hop,
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


@pytest.mark.anyio
async def test_context_travels_the_whole_chain_and_each_hop_verifies_its_own(
    serve: Callable[..., RunningServer], tmp_path: Path
) -> None:
    tts_url, workload_keys = start_tts(serve, tmp_path)

    def hop_verifier() -> TxnTokenVerifier:
        jwks = RemoteJwksKeySource(f"{tts_url}/.well-known/jwks.json", allow_http=True)
        return TxnTokenVerifier(jwks, trust_domain=TRUST_DOMAIN, issuer=IDENTIFIER)

    verifiers = {hop: hop_verifier() for hop in ("orders", "checkout", "inventory", "warehouse", "payments")}
    auth = TxnTokenAuth(trusted_hosts=["127.0.0.1"])

    # payments: the last hop, ASGI.
    async def pay(request: Request) -> JSONResponse:
        return JSONResponse({"hops": [seen("payments")]})

    payments = serve(asgi("payments", pay, verifiers["payments"], Rule("POST /pay", bind={"query.qty": "reserved"})))

    # warehouse: gRPC sync server; calls payments with a sync httpx client.
    def pick(request: Any, context: grpc.ServicerContext) -> Any:
        with httpx.Client(auth=auth, event_hooks=auth.event_hooks) as client:
            after = client.post(f"{payments.url}/pay", params={"qty": request["qty"]}).json()
        return {"hops": [seen("warehouse"), *after["hops"]]}

    warehouse = grpc.server(ThreadPoolExecutor(4), interceptors=[TxnTokenServerInterceptor(verifiers["warehouse"])])
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
            async with grpc.aio.insecure_channel(warehouse_target, interceptors=aio_client_interceptors()) as channel:
                pick_call = channel.unary_unary(
                    "/chain.Warehouse/Pick", request_serializer=encode, response_deserializer=decode
                )
                after = await pick_call({"qty": request["qty"]}, timeout=10)
        return {"hops": [before, inside, *after["hops"]]}

    inventory_policy = Policy([Rule("/chain.Inventory/Reserve", scopes=["trade"], bind={"message.symbol": "symbol"})])
    inventory = grpc.aio.server(
        interceptors=[AioTxnTokenServerInterceptor(verifiers["inventory"], policy=inventory_policy)]
    )
    inventory.add_generic_rpc_handlers([service("Inventory", "Reserve", reserve)])
    inventory_target = f"127.0.0.1:{inventory.add_insecure_port('127.0.0.1:0')}"
    await inventory.start()

    # checkout: ASGI with a sync endpoint (thread pool); calls inventory with a sync gRPC channel.
    def checkout_handler(request: Request) -> JSONResponse:
        with grpc.insecure_channel(inventory_target) as channel:
            stub = grpc.intercept_channel(channel, TxnTokenClientInterceptor())
            reserve_call = stub.unary_unary(
                "/chain.Inventory/Reserve", request_serializer=encode, response_deserializer=decode
            )
            after = reserve_call({"symbol": request.path_params["symbol"], "qty": 100}, timeout=10)
        return JSONResponse({"hops": [seen("checkout"), *after["hops"]]})

    checkout = serve(
        asgi(
            "checkout",
            checkout_handler,
            verifiers["checkout"],
            Rule("POST /checkout/{symbol}", bind={"path.symbol": "symbol"}),
        )
    )

    # orders: the first hop, ASGI with an async endpoint; calls checkout with an async httpx client.
    async def order(request: Request) -> JSONResponse:
        async with httpx.AsyncClient(auth=auth, event_hooks=auth.async_event_hooks, timeout=20) as client:
            after = (await client.post(f"{checkout.url}/checkout/MSFT")).json()
        return JSONResponse({"hops": [seen("orders"), *after["hops"]]})

    orders = serve(asgi("orders", order, verifiers["orders"], None))

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
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(f"{orders.url}/order", headers={"Txn-Token": token})
    finally:
        await inventory.stop(None)
        warehouse.stop(None)
    assert response.status_code == 200, response.text
    hops = {hop["hop"]: hop for hop in response.json()["hops"]}
    assert tuple(hops) == HOPS

    original = {"action": "buy", "symbol": "MSFT"}
    first_token = hashlib.sha256(token.encode()).hexdigest()[:16]
    last = hops["payments"]
    assert last["txn"] == hops["orders"]["txn"] and last["sub"] == "alice"
    assert last["tctx"] == {**original, **AUGMENTED}
    for hop in ("orders", "checkout", "inventory"):
        assert hops[hop] | {"hop": None} == {
            "hop": None,
            "txn": last["txn"],
            "sub": "alice",
            "scope": "trade read",
            "req_wl": GATEWAY,
            "tctx": original,
            "token": first_token,  # forwarded exactly as received
        }
    for hop in ("inventory+augmented", "warehouse", "payments"):
        assert hops[hop] | {"hop": None} == {
            "hop": None,
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


def asgi(name: str, endpoint: Callable[..., Any], verifier: TxnTokenVerifier, rule: Rule | None) -> Starlette:
    route = {"orders": "/order", "checkout": "/checkout/{symbol}", "payments": "/pay"}[name]
    policy = Policy([rule]) if rule else None
    return Starlette(
        routes=[Route(route, endpoint, methods=["POST"])],
        middleware=[Middleware(TxnTokenMiddleware, verifier=verifier, policy=policy)],
    )


def service(name: str, method: str, behavior: Callable[..., Any]) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        f"chain.{name}",
        {
            method: grpc.unary_unary_rpc_method_handler(
                behavior, request_deserializer=decode, response_serializer=encode
            )
        },
    )
