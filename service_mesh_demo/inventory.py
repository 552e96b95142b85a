"""inventory (gRPC aio): reserves stock. Its method binds the item and quantity of the request message to the order in
the Txn-Token, and it augments the transaction with the reservation id before asking payments to charge.

Messages are JSON (no protoc needed); the binding extractor reads a decoded message as a mapping.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import grpc
import httpx

from service_mesh_demo.common import DemoEnv, configure_logging, prefetch_keys
from service_mesh_demo.hops import (
    ReportingServerInterceptor,
    aforward_trace,
    http_sink,
    note_transaction,
    note_tts_call,
)
from service_mesh_demo.topology import workload_id
from txtoken.augment import aaugment
from txtoken.context import require_transaction
from txtoken.credentials import FileCredentialSource
from txtoken.credentials.external import ExternalTokenSource, JwtBearerGrant
from txtoken.errors import TxTokenError
from txtoken.policy import Policy, Rule
from txtoken_grpc import AioTxnTokenServerInterceptor
from txtoken_httpx import EgressAuth, TxnTokenAuth

__all__ = ["POLICY", "RESERVE", "encode_message", "serve"]

SERVICE = "shop.Inventory"
RESERVE = f"/{SERVICE}/Reserve"
POLICY = Policy(
    [
        Rule(
            RESERVE,
            scopes=["inventory.reserve"],
            bind={"message.order_id": "order_id", "message.item": "item", "message.quantity": "quantity"},
            callers=[workload_id("orders")],
        )
    ]
)


def encode_message(value: Any) -> bytes:
    """Messages on the wire: JSON."""
    return json.dumps(value).encode("utf-8")


async def serve(env: DemoEnv) -> None:
    tts_keys = env.tts_keys()
    verifier = env.verifier(tts_keys)
    tts = env.tts_client()
    payments_url = env.urls["payments"]
    auth = TxnTokenAuth(trusted_hosts=[httpx.URL(payments_url).host], identity=env.identity())
    http = httpx.AsyncClient(
        auth=auth, timeout=10.0, event_hooks={"request": [*auth.async_event_hooks["request"], aforward_trace]}
    )
    # Egress: the supplier is another domain. Its own access token, obtained with inventory's projected token for the
    # supplier's AS (RFC 7523 JWT bearer grant); a client of its own, so the Txn-Token cannot go along.
    supplier_tokens = ExternalTokenSource(
        f"{env.urls['supplier']}/token",
        JwtBearerGrant(FileCredentialSource(env.projected_token("supplier-token"))),
        allow_http=True,  # the demo's network; https in production
    )
    supplier = httpx.AsyncClient(auth=EgressAuth(supplier_tokens), base_url=env.urls["supplier"], timeout=10.0)

    async def reserve(request: dict[str, Any], context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, Any]:
        stock = await supplier.get(f"/stock/{request['item']}")
        if stock.status_code != 200:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{stock.json().get('error')}: the supplier refused")
        txn = require_transaction()
        note_transaction(
            txn, note="checked stock at supplier.example with the supplier's own access token (RFC 7523), no Txn-Token"
        )
        reservation_id = f"r-{uuid.uuid4().hex[:8]}"
        try:
            async with aaugment(tts, verifier, request_details={"reservation_id": reservation_id}):
                note_tts_call("replacement", txn.scope, added={"reservation_id": reservation_id})
                charged = await http.post(
                    f"{payments_url}/charges", params={"order_id": request["order_id"], "amount": request["amount"]}
                )
        except TxTokenError as exc:
            note_tts_call("replacement", txn.scope, verdict=exc.code)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{exc.code}: the TTS refused the replacement")
        if charged.status_code != 200:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{charged.json().get('error')}: payment refused")
        return {"reservation_id": reservation_id, **charged.json()}

    handler = grpc.unary_unary_rpc_method_handler(
        reserve, request_deserializer=json.loads, response_serializer=encode_message
    )
    server = grpc.aio.server(
        interceptors=[
            ReportingServerInterceptor(service="inventory", sink=http_sink(env.collector)),
            AioTxnTokenServerInterceptor(verifier, policy=POLICY, callers=env.callers(), authorities=[env.address]),
        ]
    )
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"Reserve": handler})])
    await prefetch_keys(tts_keys)  # before the port opens: the launcher's readiness check
    server.add_insecure_port(f"{env.host}:{env.port}")
    await server.start()
    try:
        await server.wait_for_termination()
    finally:
        await http.aclose()
        await supplier.aclose()
        supplier_tokens.close()
        await tts.aclose()


def run() -> None:
    env = DemoEnv.load()
    configure_logging(env)
    asyncio.run(serve(env))
