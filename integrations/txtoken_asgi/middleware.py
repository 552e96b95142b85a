"""``TxnTokenMiddleware``: pure ASGI; verifies the caller's WIT and WPT (when configured), then the ``Txn-Token``
header, and runs the app inside the transaction."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from txtoken import telemetry
from txtoken.carrier import carried_token
from txtoken.claims import HTTP_HEADER
from txtoken.context import current_caller, current_transaction, use_transaction
from txtoken.errors import (
    ConfigurationError,
    NoTransaction,
    TxTokenError,
    WorkloadAuthRejected,
)
from txtoken.policy import Policy
from txtoken.verify import TxnTokenVerifier
from txtoken.wimse import WIT_HEADER, WPT_HEADER, CallerVerifier, VerifiedCaller, http_audiences
from txtoken_asgi.user import TxnCredentials, TxnUser

__all__ = ["VERIFIER_STATE", "TxnTokenMiddleware", "app_verifier", "refusal_response"]

logger = logging.getLogger("txtoken.asgi")

_HEADER = HTTP_HEADER.lower().encode("latin-1")
#: WebSocket close code for a refused handshake where the server cannot send an HTTP response (RFC 6455 §7.4.1).
POLICY_VIOLATION = 1008
#: The ``app.state`` attribute that, when set, replaces the verifier the app was built with (for every request).
VERIFIER_STATE = "txtoken_verifier"


class TxnTokenMiddleware:
    """Verify the ``Txn-Token`` header of every HTTP request and WebSocket handshake, then authorize it.

    - ``verifier``: the hop's :class:`~txtoken.verify.TxnTokenVerifier` (its cache makes repeated tokens cheap).
    - ``policy``: an optional :class:`~txtoken.policy.Policy`; routes are matched on the method (``GET`` for a
      WebSocket handshake) and the path below ``root_path``.
    - ``exempt_paths``: paths served without a token (health checks); an entry ending in ``*`` is a prefix. A
      handler there that needs the transaction (``require_transaction``) gets a 401 ``no_transaction`` refusal.
    - ``starlette_auth``: also set ``scope["user"]`` (:class:`TxnUser`) and ``scope["auth"]`` (the token's scopes).
    - ``callers`` (WIMSE): a :class:`~txtoken.wimse.CallerVerifier`; the caller's ``Workload-Identity-Token`` and
      ``Workload-Proof-Token`` are verified before the Txn-Token, the WPT's ``aud`` against ``service_urls`` (this
      service's configured URLs, e.g. ``https://payments.shop.example``, followed by the request path; never the
      ``Host`` header). With ``caller_required`` (the default) every request needs them; without, only requests
      that carry them are checked, and policy rules with ``callers`` require them per route. The caller is
      ``scope["txtoken.caller"]``, ``scope["state"]["caller"]`` and :func:`txtoken.context.current_caller`.

    ``app.state.txtoken_verifier`` (:data:`VERIFIER_STATE`), when set on the Starlette or FastAPI app, is used instead
    of ``verifier``: how a test swaps the verifier of an app built elsewhere.

    A refusal is a JSON body ``{"error": code, "error_description": message}`` with status 401 (plus
    ``WWW-Authenticate``), 403 or 503; a WIT or WPT refusal is status 400 with an RFC 9457 problem-details body
    (``application/problem+json``, same ``error`` members), as the WIMSE drafts ask. A refused WebSocket handshake
    gets the same HTTP response where the server supports it, else a close with code 1008 and the error code as the
    reason. Other scope types pass through.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TxnTokenVerifier,
        policy: Policy | None = None,
        exempt_paths: Iterable[str] = (),
        starlette_auth: bool = True,
        callers: CallerVerifier | None = None,
        service_urls: Iterable[str] = (),
        caller_required: bool = True,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.policy = policy
        self.callers = callers
        self._service_urls = tuple(service_urls)
        if callers is not None and not self._service_urls:
            raise ConfigurationError("checking callers needs this service's URLs (service_urls), the WPT audience")
        self._caller_required = caller_required
        # The headers a caller check reads: the rest are not decoded.
        bound = () if callers is None else callers.wpt_verifier.other_token_headers
        self._caller_headers = frozenset(
            name.lower().encode("latin-1") for name in (WIT_HEADER, WPT_HEADER, HTTP_HEADER, "authorization", *bound)
        )
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
            await _serve_exempt(self.app, scope, receive, send)
            return
        headers = scope["headers"]
        try:
            caller = None if self.callers is None else await self._caller(self.callers, scope, headers)
            if caller is not None:  # authenticated, whatever the Txn-Token checks say next
                scope["txtoken.caller"] = caller
            txn = await (app_verifier(scope) or self.verifier).averify(_token(headers))
            if self.policy is not None:
                self.policy.authorize_http(
                    txn,
                    method=scope.get("method", "GET"),
                    path=path,
                    query_string=scope.get("query_string", b"").decode("latin-1"),
                    caller=None if caller is None else caller.workload,
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
        state = scope.setdefault("state", {})
        state["txn"] = txn
        if caller is not None:
            state["caller"] = caller
        if self._starlette_auth:
            scope["auth"] = TxnCredentials(txn)
            scope["user"] = TxnUser(txn)
        outside, outside_caller = current_transaction(), current_caller()

        async def send_outside_transaction(message: Message) -> None:
            # Callbacks the server schedules while sending (uvicorn's keep-alive timer) copy the current context; run
            # them outside the transaction so they neither see it nor keep the verified token alive after the request.
            with use_transaction(outside, outside_caller):
                await send(message)

        with use_transaction(txn, caller):
            await self.app(scope, receive, send_outside_transaction)

    async def _caller(
        self, callers: CallerVerifier, scope: Scope, headers: Iterable[tuple[bytes, bytes]]
    ) -> VerifiedCaller | None:
        """The calling workload from its WIT and WPT (None when they are absent and not required)."""
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        wanted = self._caller_headers
        return await callers.averify_http(
            [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers if bytes(name) in wanted],
            audience=http_audiences(self._service_urls, bytes(raw_path).decode("latin-1")),
            required=self._caller_required,
        )


def app_verifier(scope: Scope) -> TxnTokenVerifier | None:
    """The verifier set on the app serving ``scope`` (``app.state.txtoken_verifier``), if any."""
    state = getattr(scope.get("app"), "state", None)
    return state._state.get(VERIFIER_STATE) if isinstance(state, State) else None


async def _serve_exempt(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run ``app`` without a transaction; a handler that needs one gets a refusal instead of a server error."""
    started = False

    async def tracking_send(message: Message) -> None:
        nonlocal started
        started = True
        await send(message)

    try:
        await app(scope, receive, tracking_send)
    except NoTransaction as exc:
        if started:
            raise
        logger.warning(
            "a handler on a path exempt from Txn-Token verification needs a transaction: path=%r code=%s",
            _route_path(scope),
            exc.code,
        )
        await _send_refusal(scope, send, exc)


def _token(headers: Iterable[tuple[bytes, bytes]]) -> str:
    values = [value.decode("latin-1") for name, value in headers if name == _HEADER]
    return carried_token(values, carrier=f"{HTTP_HEADER} header")


def _route_path(scope: Scope) -> str:
    """The path the app routes on: ``path`` without the ``root_path`` it is mounted under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


def refusal_response(exc: TxTokenError, scheme: str = HTTP_HEADER) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of the answer refusing with ``exc`` (``scheme`` names the ``WWW-Authenticate``
    challenge of a 401): what the middleware, the gateway and the FastAPI handler send alike."""
    members: dict[str, object] = {"error": exc.code, "error_description": exc.message}
    content_type = b"application/json"
    if isinstance(exc, WorkloadAuthRejected):
        # RFC 9457 problem details, as draft-ietf-wimse-workload-creds §5.2 asks for WIT/WPT failures.
        members = {"type": "about:blank", "title": "Bad Request", "status": exc.http_status, **members}
        content_type = b"application/problem+json"
    body = json.dumps(members).encode("utf-8")
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
    ]
    if exc.http_status == 401:
        headers.append((b"www-authenticate", f'{scheme} error="{exc.code}"'.encode("ascii")))
    return exc.http_status, headers, body


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: TxTokenError) -> None:
    if scope["type"] == "websocket":
        message: Message = await receive()
        if message["type"] != "websocket.connect":
            return
    await _send_refusal(scope, send, exc)


async def _send_refusal(scope: Scope, send: Send, exc: TxTokenError) -> None:
    """Answer an HTTP request, or a WebSocket handshake whose ``websocket.connect`` was received, with ``exc``."""
    status, headers, body = refusal_response(exc)
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": exc.code})
