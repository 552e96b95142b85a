"""``GatewayMiddleware``: pure ASGI; the inbound gateway (:mod:`txtoken.gateway`) in front of an ASGI app.

For a declared route, the request's access token is validated and exchanged, the external ``Authorization`` (and
any ``Txn-Token`` a client sent) is removed, and the app runs inside the new transaction, so ``TxnTokenAuth`` and the
gRPC interceptors forward it. Undeclared routes (health checks, static pages) reach the app without a transaction
and without those headers.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from txtoken import telemetry
from txtoken.claims import HTTP_HEADER
from txtoken.context import current_transaction, use_transaction
from txtoken.errors import RequestTooLarge, TxTokenError
from txtoken.gateway import REFUSALS, EdgeRequest, InboundGateway
from txtoken_asgi.middleware import refusal_response

__all__ = ["GatewayMiddleware"]

_STRIPPED = frozenset({b"authorization", HTTP_HEADER.lower().encode("latin-1")})


class GatewayMiddleware:
    """Run ``app`` behind ``gateway`` (an :class:`~txtoken.gateway.InboundGateway`).

    A refusal is a JSON body ``{"error": code, "error_description": message}`` with status 400, 401 (plus
    ``WWW-Authenticate: Bearer error="..."``, RFC 6750 §3), 403, 413 or 503. The app finds the transaction with
    :func:`txtoken.current_transaction`, ``request.state.txn`` or ``request.scope["txtoken"]``.
    """

    def __init__(self, app: ASGIApp, *, gateway: InboundGateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k not in _STRIPPED]
        inner = {**scope, "headers": headers}
        found = self.gateway.route_for(scope["method"], scope["path"])
        if found is None:
            await self.app(inner, receive, send)
            return
        route, _ = found
        body = None
        try:
            if route.reads_body:
                body = await _read_body(receive, self.gateway.max_body)
            client = scope.get("client")
            admission = await self.gateway.admit(
                EdgeRequest(
                    method=scope["method"],
                    path=scope["path"],
                    headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
                    query_string=scope.get("query_string", b"").decode("latin-1"),
                    peer=client[0] if client else None,
                    body=body,
                )
            )
        except REFUSALS as exc:
            telemetry.refusal("http", exc.code)
            await _refuse(send, exc)
            return
        txn = admission.txn
        inner["txtoken"] = txn
        inner.setdefault("state", {})["txn"] = txn
        outside = current_transaction()

        async def send_outside_transaction(message: Message) -> None:
            with use_transaction(outside):
                await send(message)

        with use_transaction(txn):
            await self.app(inner, _replay(body, receive) if body is not None else receive, send_outside_transaction)


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge("the request body is too large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send: Send, exc: TxTokenError) -> None:
    status, headers, body = refusal_response(exc, scheme="Bearer")  # RFC 6750 §3
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
