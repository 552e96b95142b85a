"""``TxnTokenSecurity``: a FastAPI security dependency that yields the verified transaction."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, HTTPException, WebSocketException, status
from fastapi.openapi.models import APIKey, APIKeyIn
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection

from txtoken.carrier import carried_token
from txtoken.claims import HTTP_HEADER
from txtoken.context import use_transaction
from txtoken.errors import InsufficientScope, NoTransaction, TxTokenError
from txtoken.verify import TxnTokenVerifier, VerifiedTxnToken
from txtoken_asgi import app_verifier

__all__ = ["TxnTokenHTTPException", "TxnTokenSecurity", "docs_paths"]

logger = logging.getLogger("txtoken.fastapi")

_DESCRIPTION = (
    "A Txn-Token (OAuth Transaction Token): the compact JWT the Txn-Token Service issued for this transaction, "
    "sent as is in the Txn-Token header."
)


class TxnTokenHTTPException(HTTPException):
    """A refused Txn-Token as FastAPI's ``HTTPException``.

    The default body is ``{"detail": {"error": code, "error_description": message}}`` with status 401 (plus
    ``WWW-Authenticate``), 403 or 503. ``error`` is the :class:`~txtoken.errors.TxTokenError` with its stable
    ``code``; an exception handler registered for this class shapes the body differently.
    """

    def __init__(self, error: TxTokenError) -> None:
        headers = {"Cache-Control": "no-store"}
        if error.http_status == 401:
            headers["WWW-Authenticate"] = f'{HTTP_HEADER} error="{error.code}"'
        super().__init__(error.http_status, {"error": error.code, "error_description": error.message}, headers)
        self.error = error


class TxnTokenSecurity(SecurityBase):
    """The verified transaction of the request, for ``Security(txn_token, scopes=[...])`` or ``Depends``.

    - Behind :class:`~txtoken_asgi.TxnTokenMiddleware` it reads the transaction the middleware verified.
    - Otherwise it verifies the ``Txn-Token`` header itself with ``verifier`` (or ``app.state.txtoken_verifier``,
      when set) and makes it the current transaction for the rest of the request, so outbound calls forward it.

    The scopes of every enclosing ``Security`` must all be in the token's ``scope`` (else 403
    ``insufficient_scope``). Refusals raise :class:`TxnTokenHTTPException`; on a WebSocket route, a
    ``WebSocketException`` that closes the handshake with code 1008 and the error code as the reason. The OpenAPI
    document gets an ``apiKey`` scheme for the ``Txn-Token`` header, named ``scheme_name``, with each operation's
    scopes.
    """

    def __init__(
        self,
        verifier: TxnTokenVerifier | None = None,
        *,
        scheme_name: str = "TxnToken",
        description: str = _DESCRIPTION,
    ) -> None:
        self.verifier = verifier
        self.scheme_name = scheme_name
        self.model = APIKey.model_validate({"in": APIKeyIn.header, "name": HTTP_HEADER, "description": description})

    async def __call__(
        self, connection: HTTPConnection, security_scopes: SecurityScopes
    ) -> AsyncIterator[VerifiedTxnToken]:
        try:
            txn, verified_here = await self._transaction(connection)
            missing = sorted(set(security_scopes.scopes) - txn.scopes)
            if missing:
                raise InsufficientScope(f"missing scope: {' '.join(missing)}")
        except TxTokenError as exc:
            logger.info("refused a Txn-Token: status=%s code=%s", exc.http_status, exc.code)
            if connection.scope["type"] == "websocket":
                raise WebSocketException(status.WS_1008_POLICY_VIOLATION, exc.code) from None
            raise TxnTokenHTTPException(exc) from None
        if not verified_here:
            yield txn
            return
        with use_transaction(txn):
            yield txn

    async def _transaction(self, connection: HTTPConnection) -> tuple[VerifiedTxnToken, bool]:
        """The request's verified transaction, and whether this call verified it."""
        txn: VerifiedTxnToken | None = connection.scope.get("txtoken")
        if txn is not None:  # verified by the middleware, or by this dependency earlier in the request
            return txn, False
        verifier = app_verifier(connection.scope) or self.verifier
        if verifier is None:
            raise NoTransaction("no Txn-Token was verified for this request")
        token = carried_token(connection.headers.getlist(HTTP_HEADER), carrier=f"{HTTP_HEADER} header")
        txn = await verifier.averify(token)
        connection.scope["txtoken"] = txn
        connection.state.txn = txn
        return txn, True


def docs_paths(app: FastAPI) -> list[str]:
    """The paths of the app's OpenAPI document and documentation pages, as configured (``docs_url=None`` drops one):
    the ``exempt_paths`` that let ``TxnTokenMiddleware`` serve them without a token."""
    if not app.openapi_url:
        return []
    paths = [app.openapi_url]
    if app.docs_url:
        paths.append(app.docs_url)
        if app.swagger_ui_oauth2_redirect_url:
            paths.append(app.swagger_ui_oauth2_redirect_url)
    if app.redoc_url:
        paths.append(app.redoc_url)
    return paths
