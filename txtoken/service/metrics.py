"""``GET /metrics``: txtoken's OpenTelemetry metrics as Prometheus text, through OpenTelemetry's Prometheus exporter.

The metrics are defined once, in :mod:`txtoken.otel`; the exporter names them the Prometheus way
(``txtoken.verifications`` becomes ``txtoken_verifications_total``). Needs the ``prometheus`` extra.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from txtoken import telemetry
from txtoken.errors import ConfigurationError
from txtoken.extras import MissingExtra, requires_extra

__all__ = ["PrometheusMetrics"]


class PrometheusMetrics:
    """A meter provider read by a Prometheus exporter into a registry of its own, and the endpoint serving it."""

    def __init__(self) -> None:
        try:
            with requires_extra("prometheus", "the TTS's /metrics"):
                from opentelemetry.exporter.prometheus import PrometheusMetricReader
                from opentelemetry.sdk.metrics import MeterProvider
                from prometheus_client import CollectorRegistry
        except MissingExtra as exc:
            raise ConfigurationError(str(exc)) from None
        self._registry = CollectorRegistry()
        self._provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=self._registry)])
        self._observer: telemetry.Observer | None = None

    def start(self) -> None:
        """Report txtoken's operations to this provider (spans go to the global tracer provider)."""
        from txtoken import otel

        self._observer = otel.instrument(meter_provider=self._provider)

    def stop(self) -> None:
        if self._observer is not None and telemetry.observer is self._observer:
            telemetry.set_observer(None)
        self._provider.shutdown()

    async def endpoint(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self._registry), media_type=CONTENT_TYPE_LATEST)
