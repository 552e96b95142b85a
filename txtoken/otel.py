"""OpenTelemetry spans and metrics for txtoken (extra ``otel``): the one place the core's telemetry hooks are mapped.

::

    from txtoken import otel

    otel.instrument()  # the global tracer and meter providers; or instrument(tracer_provider=..., meter_provider=...)

Spans (names and attributes in ``docs/observability.md``): ``txtoken.verify``, ``txtoken.issue``,
``txtoken.jwks.fetch`` and ``txtoken.replace``. A failed operation has status ERROR and ``error.type`` set to the
stable error code; exceptions are not recorded (their text is not the span's business). ``txtoken.txn`` is set only
once a token verified, never put in baggage; no attribute ever holds a token.

Metrics carry only low-cardinality attributes (outcome, error code, subject token type, replay namespace).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from txtoken import telemetry
from txtoken.errors import TxTokenError
from txtoken.extras import requires_extra

with requires_extra("otel", "txtoken.otel (OpenTelemetry spans and metrics)"):
    from opentelemetry import metrics, trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode

__all__ = ["OpenTelemetryObserver", "instrument", "uninstrument"]

_SCOPE = "txtoken"
#: Attribute names for what the core reports, OpenTelemetry style (``url.full`` is a semantic-conventions name).
_ATTRIBUTES: dict[telemetry.Attribute, str] = {
    "kid": "txtoken.token.kid",
    "txn": "txtoken.txn",
    "requester": "txtoken.requester",
    "subject_token_type": "txtoken.subject_token_type",
    "replacement": "txtoken.replacement",
    "url": "url.full",
}
#: The only reported attributes that may label a metric (bounded by configuration).
_METRIC_ATTRIBUTES = frozenset({"subject_token_type"})
_OUTCOME = "txtoken.outcome"
_ERROR_TYPE = "error.type"
# Verification takes microseconds when cached, milliseconds with a key fetch.
_DURATION_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)


@dataclass(frozen=True, slots=True)
class _Kind:
    span: str
    kind: SpanKind
    counter: str
    unit: str
    description: str


_OPERATIONS: dict[telemetry.OperationName, _Kind] = {
    "verify": _Kind("txtoken.verify", SpanKind.INTERNAL, "txtoken.verifications", "{verification}", "verifications"),
    "issue": _Kind("txtoken.issue", SpanKind.INTERNAL, "txtoken.issuances", "{request}", "token requests at the TTS"),
    "jwks_fetch": _Kind("txtoken.jwks.fetch", SpanKind.CLIENT, "txtoken.jwks.fetches", "{fetch}", "JWKS fetches"),
    "replace": _Kind("txtoken.replace", SpanKind.CLIENT, "txtoken.replacements", "{replacement}", "replacement calls"),
}


class _Outcome:
    __slots__ = ("code", "labels", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.code: str | None = None
        self.labels: dict[str, str] = {}

    def annotate(self, name: telemetry.Attribute, value: str | bool) -> None:
        self.span.set_attribute(_ATTRIBUTES[name], value)
        if name in _METRIC_ATTRIBUTES and isinstance(value, str):
            self.labels[_ATTRIBUTES[name]] = value

    def fail(self, code: str) -> None:
        self.code = code


class OpenTelemetryObserver:
    """A :class:`txtoken.telemetry.Observer` that records spans with ``tracer`` and metrics with ``meter``."""

    def __init__(self, tracer: trace.Tracer, meter: metrics.Meter) -> None:
        self._tracer = tracer
        self._counters = {
            name: meter.create_counter(kind.counter, unit=kind.unit, description=kind.description)
            for name, kind in _OPERATIONS.items()
        }
        self._verify_duration = meter.create_histogram(
            "txtoken.verification.duration",
            unit="s",
            description="Duration of Txn-Token verifications",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS),
        )
        self._refusals = meter.create_counter(
            "txtoken.refusals", unit="{refusal}", description="Requests and calls refused by the integrations"
        )
        self._replay_hits = meter.create_counter(
            "txtoken.replay.hits", unit="{hit}", description="Single-use keys presented again (replays refused)"
        )

    @contextmanager
    def operation(self, name: telemetry.OperationName) -> Iterator[telemetry.Outcome]:
        kind = _OPERATIONS[name]
        started = time.perf_counter()
        with self._tracer.start_as_current_span(
            kind.span, kind=kind.kind, record_exception=False, set_status_on_exception=False
        ) as span:
            outcome = _Outcome(span)
            try:
                yield outcome
            except TxTokenError as exc:
                outcome.code = exc.code
                raise
            except BaseException as exc:
                outcome.code = type(exc).__qualname__
                raise
            finally:
                labels = outcome.labels
                if outcome.code is None:
                    labels[_OUTCOME] = "success"
                else:
                    labels[_OUTCOME] = "failure"
                    labels[_ERROR_TYPE] = outcome.code
                    span.set_attribute(_ERROR_TYPE, outcome.code)
                    span.set_status(Status(StatusCode.ERROR, outcome.code))
                self._counters[name].add(1, labels)
                if name == "verify":
                    self._verify_duration.record(time.perf_counter() - started, labels)

    def refusal(self, carrier: telemetry.Carrier, code: str) -> None:
        self._refusals.add(1, {"txtoken.carrier": carrier, _ERROR_TYPE: code})

    def replay_hit(self, namespace: str) -> None:
        self._replay_hits.add(1, {"txtoken.replay.namespace": namespace})


def instrument(
    *, tracer_provider: trace.TracerProvider | None = None, meter_provider: metrics.MeterProvider | None = None
) -> OpenTelemetryObserver:
    """Report txtoken's operations to OpenTelemetry (the global providers unless given); returns the observer."""
    from txtoken import __version__

    observer = OpenTelemetryObserver(
        trace.get_tracer(_SCOPE, __version__, tracer_provider),
        metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider),
    )
    telemetry.set_observer(observer)
    return observer


def uninstrument() -> None:
    """Stop reporting to OpenTelemetry."""
    if isinstance(telemetry.observer, OpenTelemetryObserver):
        telemetry.set_observer(None)
