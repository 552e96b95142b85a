"""Client interceptors: add the current transaction's token as ``txn-token`` metadata to every call, and with a
workload identity (WIMSE) the WIT and a fresh WPT as ``workload-identity-token`` and ``workload-proof-token``.

Sync channels: ``grpc.intercept_channel(channel, TxnTokenClientInterceptor())``. Aio channels take interceptors at
creation only, and register an object for one RPC kind only (grpc#43512), so there is one class per kind:
``grpc.aio.insecure_channel(target, interceptors=aio_client_interceptors())``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import grpc

from txtoken.claims import GRPC_METADATA_KEY
from txtoken.context import current_transaction
from txtoken.credentials.wit import WorkloadIdentity, WorkloadIdentitySource
from txtoken.errors import ConfigurationError, NoTransaction
from txtoken.wimse import WIT_METADATA_KEY, WPT_METADATA_KEY, access_token, create_wpt, grpc_audience

__all__ = [
    "AioStreamStreamTxnTokenInterceptor",
    "AioStreamUnaryTxnTokenInterceptor",
    "AioUnaryStreamTxnTokenInterceptor",
    "AioUnaryUnaryTxnTokenInterceptor",
    "TxnTokenClientInterceptor",
    "aio_client_interceptors",
]


_OWN_KEYS = frozenset({GRPC_METADATA_KEY, WIT_METADATA_KEY, WPT_METADATA_KEY})


class _TokenSource:
    """The token to send: the current transaction's; with ``required``, a call outside one raises ``NoTransaction``.

    With ``identity`` (a :class:`~txtoken.credentials.WorkloadIdentitySource`) every call also carries the WIT and a
    fresh WPT whose ``aud`` is ``https://<authority>/<package.Service>/<Method>`` (``authority``: the service name
    the server is configured with), ``tth`` over the Txn-Token sent and ``ath`` over an ``authorization`` bearer.

    The ``txn-token``, ``workload-identity-token`` and ``workload-proof-token`` entries are the interceptor's alone, as
    the headers are ``TxnTokenAuth``'s: entries the caller set are replaced, or dropped when there is nothing to send.
    """

    def __init__(
        self,
        *,
        required: bool = True,
        identity: WorkloadIdentitySource | None = None,
        authority: str | None = None,
    ) -> None:
        if identity is not None and not authority:
            raise ConfigurationError("sending a WPT needs the server's authority (the WPT audience)")
        self.required = required
        self.identity = identity
        self._authority = authority or ""

    def _metadata(
        self, metadata: Iterable[tuple[str, Any]] | None, method: str, identity: WorkloadIdentity | None
    ) -> list[tuple[str, Any]]:
        """``metadata`` without entries of ours, plus the current transaction's token and the proof, if any."""
        txn = current_transaction()
        if txn is None and self.required:
            raise NoTransaction("a gRPC call that needs a Txn-Token was made outside a transaction")
        entries = [(key, value) for key, value in metadata or () if key.lower() not in _OWN_KEYS]
        if txn is not None:
            entries.append((GRPC_METADATA_KEY, txn.token))
        if identity is not None:
            bearer = next((v for k, v in entries if k.lower() == "authorization" and isinstance(v, str)), None)
            wpt = create_wpt(
                identity.key,
                wit=identity.wit,
                audience=grpc_audience(self._authority, method),
                txn_token=None if txn is None else txn.token,
                access_token=access_token(bearer),
            )
            entries += [(WIT_METADATA_KEY, identity.wit), (WPT_METADATA_KEY, wpt)]
        return entries


def _method(details: Any) -> str:
    method = details.method
    return method.decode("ascii") if isinstance(method, bytes) else str(method)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, base: grpc.ClientCallDetails, metadata: tuple[tuple[str, str | bytes], ...]) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = base.wait_for_ready
        self.compression = base.compression


class TxnTokenClientInterceptor(
    _TokenSource,
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """For ``grpc.intercept_channel``: all four RPC kinds."""

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        identity = None if self.identity is None else self.identity.get()
        return _CallDetails(details, tuple(self._metadata(details.metadata, _method(details), identity)))

    def intercept_unary_unary(self, continuation: Callable[..., Any], client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)


class _AioTokenSource(_TokenSource):
    async def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        identity = None if self.identity is None else await self.identity.aget()
        entries = self._metadata(details.metadata, _method(details), identity)
        metadata = grpc.aio.Metadata.from_tuple(tuple(entries))
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class AioUnaryUnaryTxnTokenInterceptor(_AioTokenSource, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(await self._details(client_call_details), request)


class AioUnaryStreamTxnTokenInterceptor(_AioTokenSource, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(await self._details(client_call_details), request)


class AioStreamUnaryTxnTokenInterceptor(_AioTokenSource, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(await self._details(client_call_details), request_iterator)


class AioStreamStreamTxnTokenInterceptor(_AioTokenSource, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(await self._details(client_call_details), request_iterator)


def aio_client_interceptors(
    *, required: bool = True, identity: WorkloadIdentitySource | None = None, authority: str | None = None
) -> list[grpc.aio.ClientInterceptor]:
    """One interceptor per RPC kind, for ``grpc.aio.insecure_channel(..., interceptors=...)``."""
    options: dict[str, Any] = {"required": required, "identity": identity, "authority": authority}
    return [
        AioUnaryUnaryTxnTokenInterceptor(**options),
        AioUnaryStreamTxnTokenInterceptor(**options),
        AioStreamUnaryTxnTokenInterceptor(**options),
        AioStreamStreamTxnTokenInterceptor(**options),
    ]
