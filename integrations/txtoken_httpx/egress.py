"""``EgressAuth``: calls that leave the trust domain, authenticated with an access token of the other domain.

The request never carries the Txn-Token, the Workload Identity Token or the Workload Proof Token (they are removed if
present): those stay inside the trust domain. It carries ``Authorization: Bearer`` with a token from an
:class:`~txtoken.credentials.external.ExternalTokenSource` (cached, one fetch for concurrent callers), and a 401 from
the external API makes it fetch a new token and send the request once more.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

from txtoken.claims import HTTP_HEADER
from txtoken.credentials.external import ExternalTokenSource

__all__ = ["INTERNAL_HEADERS", "EgressAuth"]

#: Headers that never leave the trust domain.
INTERNAL_HEADERS = (HTTP_HEADER, "Workload-Identity-Token", "Workload-Proof-Token")


def _prepare(request: httpx.Request, token: str) -> None:
    for name in INTERNAL_HEADERS:
        request.headers.pop(name, None)
    request.headers["Authorization"] = f"Bearer {token}"


class EgressAuth(httpx.Auth):
    """Authenticate outbound calls to another domain with ``tokens`` (see the module docstring). Use it on a client
    of its own, without ``TxnTokenAuth`` or its event hooks."""

    requires_request_body = True  # a request refused with 401 is sent again

    def __init__(self, tokens: ExternalTokenSource) -> None:
        self.tokens = tokens

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.tokens.get().value
        _prepare(request, token)
        response = yield request
        if response.status_code == 401:
            self.tokens.invalidate(token)
            _prepare(request, self.tokens.get().value)
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = (await self.tokens.aget()).value
        _prepare(request, token)
        response = yield request
        if response.status_code == 401:
            self.tokens.invalidate(token)
            _prepare(request, (await self.tokens.aget()).value)
            yield request
