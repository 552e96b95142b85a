"""``TxnTokenAuth``: forward the current transaction's Txn-Token on outbound httpx requests, inside the trust domain."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator, Iterable

import httpx

from txtoken.claims import HTTP_HEADER
from txtoken.context import current_transaction
from txtoken.errors import ConfigurationError, NoTransaction

__all__ = ["TxnTokenAuth"]

logger = logging.getLogger("txtoken.httpx")

_ORIGIN = "txtoken.origin"  # request extension: the origin the token was attached for
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int | None]


def _origin(url: httpx.URL) -> Origin:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def _report_leak(request: httpx.Request, response: httpx.Response) -> None:
    """Followed redirects may have carried the token to another origin if the guard hooks were not installed."""
    origin = _origin(request.url)
    hops = [r.request for r in (*response.history[1:], response)]
    if any(HTTP_HEADER in hop.headers and _origin(hop.url) != origin for hop in hops):
        logger.error("a redirect carried the Txn-Token to another origin: install TxnTokenAuth.event_hooks")


class TxnTokenAuth(httpx.Auth):
    """Send the current transaction's token (as received, or the augmented replacement) in the ``Txn-Token`` header.

    - Only to hosts in ``trusted_hosts``: an entry is a host name, or a suffix starting with a dot
      (``".svc.cluster.local"``). Requests to other hosts carry no token.
    - Never to another origin than the request it was attached to: a request re-sent after a redirect
      (``client.send(response.next_request)``) to another origin carries none. httpx follows redirects itself
      (``follow_redirects=True``) without asking the auth again and strips only ``Authorization``; for that case pass
      the guard hooks too: ``httpx.Client(auth=auth, event_hooks=auth.event_hooks)`` (``async_event_hooks`` for an
      ``AsyncClient``).
    - Outside a transaction: raises :class:`~txtoken.errors.NoTransaction`, or with ``required=False`` sends none.

    The header is this auth's alone: a ``Txn-Token`` header already on the request is replaced or removed.
    """

    def __init__(self, *, trusted_hosts: Iterable[str], required: bool = True) -> None:
        hosts = [h.strip().lower() for h in trusted_hosts]
        if not hosts or not all(h.strip(".") for h in hosts):
            raise ConfigurationError("TxnTokenAuth needs at least one trusted host or .suffix")
        self._hosts = frozenset(h for h in hosts if not h.startswith("."))
        self._suffixes = tuple(h for h in hosts if h.startswith("."))
        self.required = required

    def trusts(self, url: httpx.URL) -> bool:
        host = url.host.lower()
        return host in self._hosts or host.endswith(self._suffixes)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.pop(HTTP_HEADER, None)
        origin = request.extensions.get(_ORIGIN)
        if (origin is None or origin == _origin(request.url)) and self.trusts(request.url):
            txn = current_transaction()
            if txn is not None:
                request.headers[HTTP_HEADER] = txn.token
                request.extensions = {**request.extensions, _ORIGIN: _origin(request.url)}
            elif self.required:
                raise NoTransaction("an outbound request that needs a Txn-Token was made outside a transaction")
        response = yield request
        if response.history and HTTP_HEADER in request.headers:
            _report_leak(request, response)

    # -- redirect guard ------------------------------------------------------------------------------------------

    def _guard(self, request: httpx.Request) -> None:
        origin = request.extensions.get(_ORIGIN)
        if origin is None:
            return
        if origin != _origin(request.url) or not self.trusts(request.url):
            request.headers.pop(HTTP_HEADER, None)

    async def _aguard(self, request: httpx.Request) -> None:
        self._guard(request)

    @property
    def event_hooks(self) -> dict[str, list[Callable[[httpx.Request], None]]]:
        """Hooks for ``httpx.Client(event_hooks=...)``: drop the token on a followed redirect to another origin."""
        return {"request": [self._guard]}

    @property
    def async_event_hooks(self) -> dict[str, list[Callable[[httpx.Request], Awaitable[None]]]]:
        """:attr:`event_hooks` for ``httpx.AsyncClient``."""
        return {"request": [self._aguard]}
