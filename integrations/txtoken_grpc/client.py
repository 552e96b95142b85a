"""Client interceptors: add the current transaction's token as ``txn-token`` metadata to every call.

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
from txtoken.errors import NoTransaction

__all__ = [
    "AioStreamStreamTxnTokenInterceptor",
    "AioStreamUnaryTxnTokenInterceptor",
    "AioUnaryStreamTxnTokenInterceptor",
    "AioUnaryUnaryTxnTokenInterceptor",
    "TxnTokenClientInterceptor",
    "aio_client_interceptors",
]


class _TokenSource:
    """The token to send: the current transaction's; with ``required``, a call outside one raises ``NoTransaction``.

    The ``txn-token`` entry is the interceptor's alone, as the header is ``TxnTokenAuth``'s: an entry the caller set is
    replaced, or dropped when there is no token to send, so a call never carries a token other than the transaction's.
    """

    def __init__(self, *, required: bool = True) -> None:
        self.required = required

    def _metadata(self, metadata: Iterable[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
        """``metadata`` without any ``txn-token`` entry, plus the current transaction's token if there is one."""
        txn = current_transaction()
        if txn is None and self.required:
            raise NoTransaction("a gRPC call that needs a Txn-Token was made outside a transaction")
        entries = [(key, value) for key, value in metadata or () if key.lower() != GRPC_METADATA_KEY]
        if txn is not None:
            entries.append((GRPC_METADATA_KEY, txn.token))
        return entries


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
        return _CallDetails(details, tuple(self._metadata(details.metadata)))

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
    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata.from_tuple(tuple(self._metadata(details.metadata)))
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class AioUnaryUnaryTxnTokenInterceptor(_AioTokenSource, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class AioUnaryStreamTxnTokenInterceptor(_AioTokenSource, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class AioStreamUnaryTxnTokenInterceptor(_AioTokenSource, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


class AioStreamStreamTxnTokenInterceptor(_AioTokenSource, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


def aio_client_interceptors(*, required: bool = True) -> list[grpc.aio.ClientInterceptor]:
    """One interceptor per RPC kind, for ``grpc.aio.insecure_channel(..., interceptors=...)``."""
    return [
        AioUnaryUnaryTxnTokenInterceptor(required=required),
        AioUnaryStreamTxnTokenInterceptor(required=required),
        AioStreamUnaryTxnTokenInterceptor(required=required),
        AioStreamStreamTxnTokenInterceptor(required=required),
    ]
