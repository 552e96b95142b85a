"""``CallerSecurity``: the authenticated calling workload (WIMSE: its WIT, then its WPT) as a FastAPI dependency."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Annotated

from fastapi import Depends
from fastapi.openapi.models import APIKey, APIKeyIn
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection

from txtoken.context import current_transaction, use_transaction
from txtoken.errors import CallerNotAllowed, ConfigurationError, TxTokenError
from txtoken.wimse import WIT_HEADER, WPT_HEADER, CallerPattern, CallerVerifier, VerifiedCaller, http_audiences
from txtoken_fastapi.refusal import refusal

__all__ = ["CALLER_STATE", "CallerSecurity"]

#: The ASGI scope key of the verified caller (``TxnTokenMiddleware`` sets the same one).
CALLER_STATE = "txtoken.caller"

_WIT_DESCRIPTION = (
    "The calling workload's Workload Identity Token (WIT, draft-ietf-wimse-workload-creds), as its identity server "
    "issued it. The route's scopes are the calling workloads it accepts (Workload Identifiers, or patterns ending "
    "in /*)."
)
_WPT_DESCRIPTION = (
    "A Workload Proof Token (WPT, draft-ietf-wimse-wpt) for this one request, signed with the WIT's key: aud the "
    "target URI, a single-use jti, a short exp, and the hashes of the WIT and of the Txn-Token sent with it."
)


class _ProofScheme(SecurityBase):
    """The OpenAPI scheme of the ``Workload-Proof-Token`` header; :class:`CallerSecurity` checks the header."""

    def __init__(self) -> None:
        self.scheme_name = "WorkloadProofToken"
        self.model = APIKey.model_validate({"in": APIKeyIn.header, "name": WPT_HEADER, "description": _WPT_DESCRIPTION})

    async def __call__(self) -> None:
        return None


_PROOF = _ProofScheme()


class CallerSecurity(SecurityBase):
    """The authenticated calling workload of the request, for ``Security(caller, scopes=[...])`` or ``Depends``.

    The scopes of ``Security(caller, scopes=[...])`` are the calling workloads the route accepts: exact Workload
    Identifiers or patterns ending in ``/*`` (:class:`~txtoken.wimse.CallerPattern`, as a policy rule's
    ``callers``); a caller matching none is refused with 403 ``caller_not_allowed``. Without scopes any
    authenticated caller is accepted. Either way the route needs one.

    - With ``callers`` (a :class:`~txtoken.wimse.CallerVerifier`) it verifies the ``Workload-Identity-Token`` and
      ``Workload-Proof-Token`` headers itself, the WPT's ``aud`` against ``service_urls`` (this service's configured
      URLs followed by the request path; never the ``Host`` header) and its ``tth`` against the ``Txn-Token``
      header. A missing or invalid WIT or WPT is refused with status 400 and its code (``wit_missing``, ...).
    - Behind :class:`~txtoken_asgi.TxnTokenMiddleware` configured with ``callers``, build it without: it reads the
      caller the middleware verified (none: 403 ``caller_not_allowed``).

    A caller is verified once per request, whichever dependencies ask for it; it is ``request.state.caller``,
    ``request.scope["txtoken.caller"]`` and :func:`txtoken.context.current_caller` for the rest of the request.

    ``required`` is for :class:`~txtoken_fastapi.TxnTokenSecurity`'s ``callers``: whether every Txn-Token it checks
    needs a caller (the whole app, or a router), or only requests carrying a WIT and WPT are checked. The OpenAPI
    document gets ``apiKey`` schemes for both headers, ``WorkloadIdentityToken`` and ``WorkloadProofToken``.
    """

    def __init__(
        self,
        callers: CallerVerifier | None = None,
        *,
        service_urls: Iterable[str] = (),
        required: bool = True,
    ) -> None:
        self.callers = callers
        self.service_urls = tuple(service_urls)
        if callers is not None and not self.service_urls:
            raise ConfigurationError("checking callers needs this service's URLs (service_urls), the WPT audience")
        self.required = required
        self.scheme_name = "WorkloadIdentityToken"
        self.model = APIKey.model_validate({"in": APIKeyIn.header, "name": WIT_HEADER, "description": _WIT_DESCRIPTION})
        self._patterns: dict[tuple[str, ...], tuple[CallerPattern, ...]] = {}

    async def __call__(
        self,
        connection: HTTPConnection,
        security_scopes: SecurityScopes,
        _proof: Annotated[None, Depends(_PROOF)],
    ) -> AsyncIterator[VerifiedCaller]:
        patterns = self._allowed(security_scopes.scopes)  # a bad pattern is the app's bug: a server error
        try:
            caller, verified_here = await self.authenticate(connection, required=True)
            if caller is None:
                raise CallerNotAllowed("no calling workload was authenticated for this request")
            if patterns and not any(pattern.matches(caller.workload) for pattern in patterns):
                raise CallerNotAllowed("the calling workload is not allowed on this route")
        except TxTokenError as exc:
            raise refusal(connection, exc, "a caller") from None
        if not verified_here:
            yield caller
            return
        with use_transaction(current_transaction(), caller):
            yield caller

    async def authenticate(self, connection: HTTPConnection, *, required: bool) -> tuple[VerifiedCaller | None, bool]:
        """The request's caller (None when absent and not ``required``), and whether this call verified it.

        Raises the WIT or WPT refusal, or :class:`~txtoken.errors.CallerNotAllowed` when a caller is ``required``
        but this dependency has no verifier and none was verified before."""
        caller: VerifiedCaller | None = connection.scope.get(CALLER_STATE)
        if caller is not None:  # verified by the middleware, or earlier in this request
            return caller, False
        if self.callers is None:
            if required:
                raise CallerNotAllowed("no calling workload was authenticated for this request")
            return None, False
        scope = connection.scope
        raw_path = bytes(scope.get("raw_path") or scope["path"].encode("utf-8")).decode("latin-1")
        caller = await self.callers.averify_http(
            [(bytes(name).decode("latin-1"), bytes(value).decode("latin-1")) for name, value in scope["headers"]],
            audience=http_audiences(self.service_urls, raw_path),
            required=required,
        )
        if caller is None:
            return None, False
        scope[CALLER_STATE] = caller
        connection.state.caller = caller
        return caller, True

    def _allowed(self, scopes: Sequence[str]) -> tuple[CallerPattern, ...]:
        key = tuple(scopes)
        patterns = self._patterns.get(key)
        if patterns is None:
            patterns = self._patterns[key] = tuple(CallerPattern(pattern) for pattern in key)
        return patterns
