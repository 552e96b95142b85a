"""Wrapping an RPC method handler so that its behaviour runs admitted and inside the transaction.

Admission happens inside the wrapped behaviour (on the server's thread pool or event loop), never in a sync
``intercept_service``, which runs on the server's polling thread. The transaction is set around each step of the
handler (the call, and every ``next`` of a response stream) and reset before each response is handed to gRPC, so it
is visible in the handler on any thread or task, and nothing is left set when a stream is cancelled mid-way.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import grpc

from txtoken.context import use_transaction
from txtoken.errors import TxTokenError
from txtoken_grpc._gate import Admission, Gate, refusal

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]

__all__ = ["wrap_handler"]

Behavior = Callable[..., Any]
_Admitted = tuple[Admission, Any, Any]


def wrap_handler(handler: Handler, method: str, gate: Gate, *, aio: bool) -> Handler:
    """The same handler (kind, serializers) with an admitting behaviour; async behaviours only on an aio server."""
    streaming = (handler.request_streaming, handler.response_streaming)
    inner: Behavior | None = {
        (False, False): handler.unary_unary,
        (False, True): handler.unary_stream,
        (True, False): handler.stream_unary,
        (True, True): handler.stream_stream,
    }[streaming]
    if inner is None:
        return handler
    behavior: Behavior
    if aio and inspect.isasyncgenfunction(inner):
        behavior = _async_generator_behavior(gate, method, inner, handler.request_streaming)
    elif aio and inspect.iscoroutinefunction(inner):
        behavior = _coroutine_behavior(gate, method, inner, handler.request_streaming)
    else:
        behavior = _sync_behavior(gate, method, inner, *streaming)
    factory = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[streaming]
    return factory(
        behavior, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )


# -- sync behaviours (sync server; sync handlers on an aio server) -------------------------------------------------


def _abort(context: Any, exc: TxTokenError, method: str) -> NoReturn:
    code, details, trailing = refusal(exc, method)
    context.set_trailing_metadata(trailing)
    context.abort(code, details)
    raise AssertionError("ServicerContext.abort returned")  # pragma: no cover


def _admit(gate: Gate, method: str, context: Any) -> Admission:
    try:
        return gate.admit(method, context.invocation_metadata())
    except TxTokenError as exc:
        _abort(context, exc, method)


def _check(gate: Gate, admission: Admission, message: Any, context: Any) -> None:
    try:
        gate.check_message(admission, message)
    except TxTokenError as exc:
        _abort(context, exc, admission.method)


class _CheckedRequests:
    """A sync handler's request stream, checked message by message.

    A refusal is raised to the handler and kept: the behaviour delivers it once the handler is done, even if the
    handler caught it. Aborting from the handler's thread instead could race the write of an earlier response on an
    aio server (grpc sends the initial metadata a second time, the abort fails, and no status is sent).
    """

    def __init__(self, gate: Gate, admission: Admission, requests: Iterator[Any]) -> None:
        self._gate = gate
        self._admission = admission
        self._requests = iter(requests)
        self.refused: TxTokenError | None = None

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self.refused is not None:
            raise self.refused
        message = next(self._requests)
        try:
            self._gate.check_message(self._admission, message)
        except TxTokenError as exc:
            self.refused = exc
            raise
        return message


def _refused(requests: Any) -> TxTokenError | None:
    return requests.refused if isinstance(requests, _CheckedRequests) else None


def _end_refused(context: Any, exc: TxTokenError, method: str) -> None:
    """Refuse with the final status of a response stream: gRPC sends it after the responses already handed over."""
    code, details, trailing = refusal(exc, method)
    context.set_trailing_metadata(trailing)
    context.set_code(code)
    context.set_details(details)


def _steps(responses: Iterator[Any], admission: Admission, requests: Any) -> Iterator[Any]:
    responses = iter(responses)
    txn, caller = admission.txn, admission.caller
    try:
        while True:
            with use_transaction(txn, caller):
                try:
                    item = next(responses)
                except StopIteration:
                    return
            if _refused(requests) is not None:
                return
            yield item
    finally:
        close = getattr(responses, "close", None)
        if close is not None:
            with use_transaction(txn, caller):
                close()


def _sync_behavior(
    gate: Gate, method: str, inner: Behavior, request_streaming: bool, response_streaming: bool
) -> Behavior:
    def prepare(request: Any, context: Any) -> tuple[Admission, Any]:
        admission = _admit(gate, method, context)
        if admission.binds_messages:
            if request_streaming:
                request = _CheckedRequests(gate, admission, request)
            else:
                _check(gate, admission, request, context)
        return admission, request

    if response_streaming:

        def stream(request: Any, context: Any) -> Iterator[Any]:
            admission, request = prepare(request, context)
            try:
                with use_transaction(admission.txn, admission.caller):
                    responses = inner(request, context)
                yield from _steps(responses, admission, request)
            except Exception:
                if _refused(request) is None:
                    raise
            refused = _refused(request)
            if refused is not None:
                _end_refused(context, refused, method)

        return stream

    def unary(request: Any, context: Any) -> Any:
        admission, request = prepare(request, context)
        try:
            with use_transaction(admission.txn, admission.caller):
                return inner(request, context)
        finally:
            refused = _refused(request)
            if refused is not None:
                _abort(context, refused, method)

    return unary


# -- async behaviours (aio server) ---------------------------------------------------------------------------------


async def _aabort(context: Any, exc: TxTokenError, method: str) -> NoReturn:
    code, details, trailing = refusal(exc, method)
    await context.abort(code, details, trailing)
    raise AssertionError("ServicerContext.abort returned")  # pragma: no cover


async def _aadmit(gate: Gate, method: str, request: Any, context: Any, request_streaming: bool) -> _Admitted:
    """The admission of the call, and its request (stream) and context, checked message by message when a rule
    binds messages."""
    try:
        admission = await gate.aadmit(method, context.invocation_metadata())
    except TxTokenError as exc:
        await _aabort(context, exc, method)
    if not admission.binds_messages:  # the usual case, without another coroutine
        return admission, request, context
    if not request_streaming:
        await _acheck(gate, admission, request, context)
        return admission, request, context
    return admission, _achecked(gate, admission, request, context), _CheckedReads(context, gate, admission)


async def _acheck(gate: Gate, admission: Admission, message: Any, context: Any) -> None:
    try:
        gate.check_message(admission, message)
    except TxTokenError as exc:
        await _aabort(context, exc, admission.method)


async def _achecked(gate: Gate, admission: Admission, requests: Any, context: Any) -> AsyncIterator[Any]:
    async for message in requests:
        await _acheck(gate, admission, message, context)
        yield message


class _CheckedReads:
    """The servicer context with ``read()`` checked too, so reading requests that way cannot bypass binding."""

    def __init__(self, context: Any, gate: Gate, admission: Admission) -> None:
        self._context = context
        self._gate = gate
        self._admission = admission

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def read(self) -> Any:
        message = await self._context.read()
        if message is not grpc.aio.EOF:
            await _acheck(self._gate, self._admission, message, self._context)
        return message


def _coroutine_behavior(gate: Gate, method: str, inner: Behavior, request_streaming: bool) -> Behavior:
    async def behavior(request: Any, context: Any) -> Any:
        admission, request, context = await _aadmit(gate, method, request, context, request_streaming)
        with use_transaction(admission.txn, admission.caller):
            return await inner(request, context)

    return behavior


def _async_generator_behavior(gate: Gate, method: str, inner: Behavior, request_streaming: bool) -> Behavior:
    async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
        admission, request, context = await _aadmit(gate, method, request, context, request_streaming)
        txn, caller = admission.txn, admission.caller
        with use_transaction(txn, caller):
            responses = inner(request, context)
        try:
            while True:
                with use_transaction(txn, caller):
                    try:
                        item = await anext(responses)
                    except StopAsyncIteration:
                        return
                yield item
        finally:
            with use_transaction(txn, caller):
                await responses.aclose()

    return behavior
