"""Telemetry hooks: where the core reports what it does, for an observer to turn into spans and metrics.

The core reports four operations (``verify``, ``issue``, ``jwks_fetch``, ``replace``) and two events: a request or
call refused by an integration (a missing token as well as a failed verification or a policy refusal), and a
replay-store hit. Nothing is reported until an observer is installed (:func:`txtoken.otel.instrument` installs the
OpenTelemetry one); until then a hook point costs one attribute lookup. An observer is only ever given what is safe
to record: stable error codes, ``kid``, ``txn`` once verified, workload ids, token type names, the JWKS URL. Never a
token.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Literal, Protocol

__all__ = [
    "Attribute",
    "Carrier",
    "Observer",
    "Operation",
    "OperationName",
    "Outcome",
    "observer",
    "operation",
    "refusal",
    "replay_hit",
    "set_observer",
]

#: What the core reports: a verification, a token-endpoint request at the TTS, a JWKS fetch, a replacement call.
OperationName = Literal["verify", "issue", "jwks_fetch", "replace"]
#: What an operation may be annotated with (values are never tokens).
Attribute = Literal["kid", "txn", "requester", "subject_token_type", "replacement", "url"]
#: Where an integration refused: an HTTP request (ASGI) or an RPC (gRPC).
Carrier = Literal["http", "grpc"]


class Outcome(Protocol):
    """The running operation: annotate what became known; ``fail`` records a failure that raised nothing."""

    def annotate(self, name: Attribute, value: str | bool) -> None: ...

    def fail(self, code: str) -> None: ...


class Observer(Protocol):
    """Receives the core's reports. ``operation`` wraps the work: an exception leaving it is a failure (a
    :class:`~txtoken.errors.TxTokenError` by its stable code)."""

    def operation(self, name: OperationName) -> AbstractContextManager[Outcome]: ...

    def refusal(self, carrier: Carrier, code: str) -> None: ...

    def replay_hit(self, namespace: str) -> None: ...


Operation = AbstractContextManager[Outcome]

#: The installed observer, or None (the default: nothing is reported).
observer: Observer | None = None


def set_observer(new: Observer | None) -> Observer | None:
    """Install ``new`` (None removes it); returns the observer it replaces."""
    global observer
    previous, observer = observer, new
    return previous


class _Unobserved:
    __slots__ = ()

    def annotate(self, name: Attribute, value: str | bool) -> None:
        pass

    def fail(self, code: str) -> None:
        pass


_UNOBSERVED = _Unobserved()


@contextmanager
def _unobserved() -> Iterator[Outcome]:
    yield _UNOBSERVED


def operation(name: OperationName) -> Operation:
    """The installed observer's ``operation``, or a no-op one (for code off the hot path)."""
    current = observer
    return _unobserved() if current is None else current.operation(name)


def refusal(carrier: Carrier, code: str) -> None:
    """Report a request or call an integration refused, by its stable code."""
    current = observer
    if current is not None:
        current.refusal(carrier, code)


def replay_hit(key: str) -> None:
    """Report a key seen again by a replay store; only its namespace (``"wpt"`` of ``"wpt:<jti>"``) is passed on."""
    current = observer
    if current is not None:
        current.replay_hit(key.split(":", 1)[0] if ":" in key else "-")
