"""txtoken for gRPC: server interceptors that verify and authorize, client interceptors that forward.

::

    server = grpc.aio.server(interceptors=[AioTxnTokenServerInterceptor(verifier, policy=policy)])
    channel = grpc.aio.insecure_channel(target, interceptors=aio_client_interceptors())

The token travels in the ``txn-token`` metadata entry (exactly one). Handlers read the verified transaction with
:func:`txtoken.current_transaction`.
"""

from txtoken.extras import requires_extra

with requires_extra("grpc", "txtoken_grpc (the gRPC interceptors)"):
    from txtoken_grpc._gate import ERROR_METADATA_KEY, BindingExtractor, default_binding_extractor
    from txtoken_grpc.client import (
        AioStreamStreamTxnTokenInterceptor,
        AioStreamUnaryTxnTokenInterceptor,
        AioUnaryStreamTxnTokenInterceptor,
        AioUnaryUnaryTxnTokenInterceptor,
        TxnTokenClientInterceptor,
        aio_client_interceptors,
    )
    from txtoken_grpc.server import AioTxnTokenServerInterceptor, TxnTokenServerInterceptor

__all__ = [
    "ERROR_METADATA_KEY",
    "AioStreamStreamTxnTokenInterceptor",
    "AioStreamUnaryTxnTokenInterceptor",
    "AioTxnTokenServerInterceptor",
    "AioUnaryStreamTxnTokenInterceptor",
    "AioUnaryUnaryTxnTokenInterceptor",
    "BindingExtractor",
    "TxnTokenClientInterceptor",
    "TxnTokenServerInterceptor",
    "aio_client_interceptors",
    "default_binding_extractor",
]
