"""JWT-SVIDs from the SPIFFE Workload API (a local API on a unix socket; Workload Identity Practices §4.2).

Uses py-spiffe (``pip install 'txtoken[spiffe]'``), imported only when a source is created. Its client is blocking
and keeps no SVID cache, so this source caches one JWT-SVID per audience until shortly before its expiry and runs
every Workload API call in a worker thread when called from async code. The socket comes from configuration (the
``socket`` argument or ``SPIFFE_ENDPOINT_SOCKET``), never from a request.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from txtoken.credentials._audience import AudienceSource
from txtoken.credentials._cache import DEFAULT_REFRESH_MARGIN
from txtoken.credentials._jwt import jwt_credential
from txtoken.credentials.base import Credential
from txtoken.errors import ConfigurationError, CredentialUnavailable
from txtoken.extras import requires_extra

if TYPE_CHECKING:
    from spiffe import WorkloadApiClient

__all__ = ["SPIFFE_ENDPOINT_SOCKET", "SpiffeJwtSource"]

SPIFFE_ENDPOINT_SOCKET = "SPIFFE_ENDPOINT_SOCKET"
_UNREACHABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})


def _import_py_spiffe() -> None:
    with requires_extra("spiffe", "the SPIFFE credential source"):
        import spiffe  # noqa: F401


class SpiffeJwtSource(AudienceSource):
    """JWT-SVIDs for ``audience`` (or the audience given to :meth:`get`) from the SPIFFE Workload API.

    ``socket`` is the Workload API address (``unix:///path/to/agent.sock``); by default the value of
    ``SPIFFE_ENDPOINT_SOCKET``. ``timeout`` bounds each Workload API call. Call :meth:`close` (or use the source as a
    context manager) to close the gRPC channel.
    """

    def __init__(
        self,
        audience: str,
        *,
        socket: str | None = None,
        timeout: float = 5.0,
        environ: Mapping[str, str] | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _import_py_spiffe()
        super().__init__(audience, refresh_margin=refresh_margin, clock=clock)
        if not timeout > 0:
            raise ConfigurationError("timeout must be more than zero seconds")
        self.socket = socket or (os.environ if environ is None else environ).get(SPIFFE_ENDPOINT_SOCKET) or None
        self._timeout = timeout
        self._client: WorkloadApiClient | None = None
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.audience!r}, socket={self.socket!r})"

    def close(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> SpiffeJwtSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _connect(self) -> WorkloadApiClient:
        from spiffe import WorkloadApiClient
        from spiffe.errors import ArgumentError

        with self._client_lock:
            if self._client is not None:
                return self._client
            if self.socket is None:
                raise CredentialUnavailable(
                    f"no SPIFFE Workload API socket: set {SPIFFE_ENDPOINT_SOCKET} (for example "
                    "unix:///run/spire/sockets/agent.sock) or pass socket="
                )
            self._check_socket(self.socket)
            try:
                self._client = WorkloadApiClient(self.socket, default_timeout=self._timeout)
            except ArgumentError as exc:
                raise CredentialUnavailable(
                    f"the SPIFFE Workload API socket {self.socket} cannot be used: {exc}"
                ) from None
            return self._client

    @staticmethod
    def _check_socket(address: str) -> None:
        if address.startswith("unix:"):
            path = "/" + address.removeprefix("unix:").lstrip("/")
        elif address.startswith("/"):
            path = address
        else:
            raise CredentialUnavailable(
                f"the SPIFFE Workload API address {address} is not supported: py-spiffe connects to unix sockets "
                "only (unix:///path/to/agent.sock)"
            )
        if not os.path.exists(path):
            raise CredentialUnavailable(
                f"the SPIFFE Workload API socket {path} does not exist: is the SPIFFE agent running and its socket "
                "mounted into this container?"
            )

    def _fetch(self, audience: str) -> Credential:
        from spiffe.errors import PySpiffeError

        client = self._connect()
        try:
            svid = client.fetch_jwt_svid(audience={audience})
        except PySpiffeError as exc:
            failure = _grpc_failure(exc)
            if failure is not None and failure[0] in _UNREACHABLE:
                # A fresh channel next time, rather than waiting out gRPC's reconnect backoff.
                self._drop(client)
            raise self._unavailable(exc, failure, audience) from None
        return jwt_credential(svid.token, origin=f"the JWT-SVID from {self.socket}", now=self._clock())

    def _drop(self, client: WorkloadApiClient) -> None:
        with self._client_lock:
            if self._client is not client:
                return
            self._client = None
        client.close()

    def _unavailable(self, exc: Exception, failure: tuple[str, str] | None, audience: str) -> CredentialUnavailable:
        where = f"the SPIFFE Workload API at {self.socket}"
        if failure is None:
            cause = type(exc.__cause__ or exc).__name__
            return CredentialUnavailable(f"{where} sent no usable JWT-SVID for audience {audience!r} ({cause})")
        status, details = failure
        if status in _UNREACHABLE:
            return CredentialUnavailable(f"{where} is unavailable ({status}): is the SPIFFE agent running?")
        return CredentialUnavailable(f"{where} refused a JWT-SVID for audience {audience!r}: {status} {details}")


def _grpc_failure(exc: Exception) -> tuple[str, str] | None:
    """The status name and details of the gRPC call behind ``exc``, if a gRPC call failed."""
    import grpc

    cause = exc.__cause__
    if isinstance(cause, grpc.Call):
        return cause.code().name, cause.details() or ""
    return None
