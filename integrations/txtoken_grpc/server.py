"""Server interceptors for ``grpc.server`` and ``grpc.aio.server``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import grpc

from txtoken.policy import Policy
from txtoken.verify import TxnTokenVerifier
from txtoken.wimse import CallerVerifier
from txtoken_grpc._gate import BindingExtractor, Gate
from txtoken_grpc._wrap import wrap_handler

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]

__all__ = ["AioTxnTokenServerInterceptor", "TxnTokenServerInterceptor"]


class _ServerInterceptorBase:
    def __init__(
        self,
        verifier: TxnTokenVerifier,
        *,
        policy: Policy | None = None,
        binding_extractor: BindingExtractor | None = None,
        exempt_methods: Iterable[str] = (),
        callers: CallerVerifier | None = None,
        authorities: Iterable[str] = (),
        caller_required: bool = True,
    ) -> None:
        self._gate = Gate(
            verifier,
            policy,
            binding_extractor,
            exempt_methods,
            callers=callers,
            authorities=authorities,
            caller_required=caller_required,
        )
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def _wrap(self, handler: Handler | None, method: str, *, aio: bool) -> Handler | None:
        """The admitting handler for ``handler``, built once per method and handler object."""
        if handler is None or method in self._gate.exempt:
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = wrap_handler(handler, method, self._gate, aio=aio)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


class TxnTokenServerInterceptor(_ServerInterceptorBase, grpc.ServerInterceptor):
    """Verify the ``txn-token`` metadata of every call to a ``grpc.server`` and run the handler in the transaction.

    ``policy`` authorizes by full method name; ``binding_extractor`` reads a request message's fields for
    ``message.*`` bindings (default: mappings and protobuf messages); ``exempt_methods`` are served without a token.
    ``callers`` (WIMSE) verifies the ``workload-identity-token`` and ``workload-proof-token`` metadata before the
    Txn-Token, the WPT's ``aud`` being ``https://<authority>/<package.Service>/<Method>`` for one of ``authorities``
    (this service's names, from configuration); required on every call unless ``caller_required`` is off, when
    policy rules with ``callers`` require them per method. Handlers read the caller with
    :func:`txtoken.context.current_caller`.
    Refusals abort with UNAUTHENTICATED, PERMISSION_DENIED or UNAVAILABLE, details ``"<code>: <message>"`` and
    trailing metadata ``txtoken-error: <code>``.
    """

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        return self._wrap(continuation(handler_call_details), handler_call_details.method, aio=False)


class AioTxnTokenServerInterceptor(_ServerInterceptorBase, grpc.aio.ServerInterceptor):
    """:class:`TxnTokenServerInterceptor` for ``grpc.aio.server``: async and sync handlers, all four RPC kinds."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        return self._wrap(await continuation(handler_call_details), handler_call_details.method, aio=True)
