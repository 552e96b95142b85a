"""``TxnTokenAuth``: forward the current transaction's Txn-Token on outbound httpx requests, inside the trust domain,
with the workload's WIT and a fresh WPT bound to the request when a workload identity is configured."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable

import httpx

from txtoken.claims import HTTP_HEADER
from txtoken.context import current_transaction
from txtoken.credentials.wit import WorkloadIdentity, WorkloadIdentitySource
from txtoken.errors import ConfigurationError, NoTransaction
from txtoken.wimse import WIT_HEADER, WPT_HEADER, access_token, create_wpt

__all__ = ["TxnTokenAuth"]

logger = logging.getLogger("txtoken.httpx")

_ORIGIN = "txtoken.origin"  # request extension: the origin the token was attached for
_IDENTITY = "txtoken.identity"  # request extension: the workload identity whose WIT was attached
_HEADERS = (HTTP_HEADER, WIT_HEADER, WPT_HEADER)
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

    - ``identity`` (WIMSE): a :class:`~txtoken.credentials.WorkloadIdentitySource`; every request to a trusted host
      then carries the workload's ``Workload-Identity-Token`` and a fresh ``Workload-Proof-Token`` (``aud`` the
      target URI without query, ``tth`` over the exact Txn-Token sent, ``ath`` over the token of an
      ``Authorization: Bearer`` header), also outside a transaction when the token is not required. The guard
      hooks strip them on a redirect to another origin and sign a new WPT for a redirect within the origin.

    These headers are this auth's alone: ``Txn-Token``, ``Workload-Identity-Token`` and ``Workload-Proof-Token``
    headers already on the request are replaced or removed.
    """

    def __init__(
        self,
        *,
        trusted_hosts: Iterable[str],
        required: bool = True,
        identity: WorkloadIdentitySource | None = None,
    ) -> None:
        hosts = [h.strip().lower() for h in trusted_hosts]
        if not hosts or not all(h.strip(".") for h in hosts):
            raise ConfigurationError("TxnTokenAuth needs at least one trusted host or .suffix")
        self._hosts = frozenset(h for h in hosts if not h.startswith("."))
        self._suffixes = tuple(h for h in hosts if h.startswith("."))
        self.required = required
        self.identity = identity

    def trusts(self, url: httpx.URL) -> bool:
        host = url.host.lower()
        return host in self._hosts or host.endswith(self._suffixes)

    def _attaches(self, request: httpx.Request) -> bool:
        for name in _HEADERS:
            request.headers.pop(name, None)
        origin = request.extensions.get(_ORIGIN)
        return (origin is None or origin == _origin(request.url)) and self.trusts(request.url)

    def _attach(self, request: httpx.Request, identity: WorkloadIdentity | None) -> None:
        txn = current_transaction()
        if txn is not None:
            request.headers[HTTP_HEADER] = txn.token
        elif self.required:
            raise NoTransaction("an outbound request that needs a Txn-Token was made outside a transaction")
        extensions = {**request.extensions, _ORIGIN: _origin(request.url)}
        if identity is not None:
            extensions[_IDENTITY] = identity
            _prove(request, identity)
        request.extensions = extensions

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._attaches(request):
            self._attach(request, None if self.identity is None else self.identity.get())
        response = yield request
        if response.history and HTTP_HEADER in request.headers:
            _report_leak(request, response)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self._attaches(request):
            self._attach(request, None if self.identity is None else await self.identity.aget())
        response = yield request
        if response.history and HTTP_HEADER in request.headers:
            _report_leak(request, response)

    # -- redirect guard ------------------------------------------------------------------------------------------

    def _guard(self, request: httpx.Request) -> None:
        origin = request.extensions.get(_ORIGIN)
        if origin is None:
            return
        if origin != _origin(request.url) or not self.trusts(request.url):
            for name in _HEADERS:
                request.headers.pop(name, None)
            return
        identity = request.extensions.get(_IDENTITY)
        if isinstance(identity, WorkloadIdentity):
            _prove(request, identity)  # a WPT is bound to its target URI: a redirect needs a new one

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


def _prove(request: httpx.Request, identity: WorkloadIdentity) -> None:
    """Set the WIT and a fresh WPT for this request's target URI and the tokens it carries."""
    request.headers[WIT_HEADER] = identity.wit
    request.headers[WPT_HEADER] = create_wpt(
        identity.key,
        wit=identity.wit,
        audience=str(request.url.copy_with(query=None, fragment=None)),
        txn_token=request.headers.get(HTTP_HEADER),
        access_token=access_token(request.headers.get("authorization")),
    )
