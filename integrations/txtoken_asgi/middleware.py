"""``TxnTokenMiddleware``: pure ASGI; verifies the ``Txn-Token`` header and runs the app inside the transaction."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from txtoken import telemetry
from txtoken.carrier import carried_token
from txtoken.claims import HTTP_HEADER
from txtoken.context import current_transaction, use_transaction
from txtoken.errors import TxTokenError
from txtoken.policy import Policy
from txtoken.verify import TxnTokenVerifier
from txtoken_asgi.user import TxnUser, credentials_for

__all__ = ["TxnTokenMiddleware"]

logger = logging.getLogger("txtoken.asgi")

_HEADER = HTTP_HEADER.lower().encode("latin-1")
#: WebSocket close code for a refused handshake where the server cannot send an HTTP response (RFC 6455 §7.4.1).
POLICY_VIOLATION = 1008


class TxnTokenMiddleware:
    """Verify the ``Txn-Token`` header of every HTTP request and WebSocket handshake, then authorize it.

    - ``verifier``: the hop's :class:`~txtoken.verify.TxnTokenVerifier` (its cache makes repeated tokens cheap).
    - ``policy``: an optional :class:`~txtoken.policy.Policy`; routes are matched on the method (``GET`` for a
      WebSocket handshake) and the path below ``root_path``.
    - ``exempt_paths``: paths served without a token (health checks); an entry ending in ``*`` is a prefix.
    - ``starlette_auth``: also set ``scope["user"]`` (:class:`TxnUser`) and ``scope["auth"]`` (the token's scopes).

    A refusal is a JSON body ``{"error": code, "error_description": message}`` with status 401 (plus
    ``WWW-Authenticate``), 403 or 503; a refused WebSocket handshake gets the same HTTP response where the server
    supports it, else a close with code 1008 and the error code as the reason. Other scope types pass through.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TxnTokenVerifier,
        policy: Policy | None = None,
        exempt_paths: Iterable[str] = (),
        starlette_auth: bool = True,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.policy = policy
        exempt = list(exempt_paths)
        self._exempt = frozenset(p for p in exempt if not p.endswith("*"))
        self._exempt_prefixes = tuple(p[:-1] for p in exempt if p.endswith("*"))
        self._starlette_auth = starlette_auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = _route_path(scope)
        if path in self._exempt or path.startswith(self._exempt_prefixes):
            await self.app(scope, receive, send)
            return
        try:
            txn = await self.verifier.averify(_token(scope["headers"]))
            if self.policy is not None:
                self.policy.authorize_http(
                    txn,
                    method=scope.get("method", "GET"),
                    path=path,
                    query_string=scope.get("query_string", b"").decode("latin-1"),
                )
        except TxTokenError as exc:
            method = scope.get("method", "GET")
            logger.info(
                "refused a Txn-Token: %s %r status=%s code=%s",
                method,
                path,
                exc.http_status,
                exc.code,
                extra={"method": method, "path": path, "status": exc.http_status, "code": exc.code},
            )
            telemetry.refusal("http", exc.code)
            await _refuse(scope, receive, send, exc)
            return
        scope["txtoken"] = txn
        scope.setdefault("state", {})["txn"] = txn
        if self._starlette_auth:
            scope["auth"] = credentials_for(txn)
            scope["user"] = TxnUser(txn)
        outside = current_transaction()

        async def send_outside_transaction(message: Message) -> None:
            # Callbacks the server schedules while sending (uvicorn's keep-alive timer) copy the current context; run
            # them outside the transaction so they neither see it nor keep the verified token alive after the request.
            with use_transaction(outside):
                await send(message)

        with use_transaction(txn):
            await self.app(scope, receive, send_outside_transaction)


def _token(headers: Iterable[tuple[bytes, bytes]]) -> str:
    values = [bytes(value).decode("latin-1") for name, value in headers if name == _HEADER]
    return carried_token(values, carrier=f"{HTTP_HEADER} header")


def _route_path(scope: Scope) -> str:
    """The path the app routes on: ``path`` without the ``root_path`` it is mounted under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


def _response(exc: TxTokenError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"error": exc.code, "error_description": exc.message}).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
    ]
    if exc.http_status == 401:
        headers.append((b"www-authenticate", f'{HTTP_HEADER} error="{exc.code}"'.encode("ascii")))
    return exc.http_status, headers, body


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: TxTokenError) -> None:
    status, headers, body = _response(exc)
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    message: Message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": exc.code})
