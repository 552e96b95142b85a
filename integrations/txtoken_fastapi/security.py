"""``TxnTokenSecurity``: a FastAPI security dependency that yields the verified transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.openapi.models import APIKey, APIKeyIn
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection

from txtoken.carrier import carried_token
from txtoken.claims import HTTP_HEADER
from txtoken.context import use_transaction
from txtoken.errors import CallerNotAllowed, InsufficientScope, NoTransaction, TxTokenError, WorkloadAuthRejected
from txtoken.verify import TxnTokenVerifier, VerifiedTxnToken
from txtoken_asgi import app_verifier
from txtoken_fastapi.caller import CALLER_STATE, CallerSecurity
from txtoken_fastapi.refusal import TxnTokenHTTPException, refusal

__all__ = ["TxnTokenHTTPException", "TxnTokenSecurity", "docs_paths"]

_DESCRIPTION = (
    "A Txn-Token (OAuth Transaction Token): the compact JWT the Txn-Token Service issued for this transaction, "
    "sent as is in the Txn-Token header."
)


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

    ``callers`` (WIMSE): a :class:`~txtoken_fastapi.CallerSecurity`; the calling workload's WIT and WPT are
    verified before the Txn-Token (once per request, shared with the routes' ``Security(caller, ...)``), on every
    request when ``callers.required``, else on those that carry them. The caller is current with the transaction.
    """

    def __init__(
        self,
        verifier: TxnTokenVerifier | None = None,
        *,
        scheme_name: str = "TxnToken",
        description: str = _DESCRIPTION,
        callers: CallerSecurity | None = None,
    ) -> None:
        self.verifier = verifier
        self.callers = callers
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
            caller_refused = isinstance(exc, WorkloadAuthRejected | CallerNotAllowed)
            raise refusal(connection, exc, "a caller" if caller_refused else "a Txn-Token") from None
        if not verified_here:
            yield txn
            return
        with use_transaction(txn, connection.scope.get(CALLER_STATE)):
            yield txn

    async def _transaction(self, connection: HTTPConnection) -> tuple[VerifiedTxnToken, bool]:
        """The request's verified transaction, and whether this call verified it (after the caller, if configured)."""
        if self.callers is not None:  # WIT, then WPT, then the Txn-Token
            await self.callers.authenticate(connection, required=self.callers.required)
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
