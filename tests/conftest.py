"""Shared fixtures: the anyio backend and real uvicorn servers on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn


@pytest.fixture
def anyio_backend() -> str:
    # grpc.aio is asyncio-only, so every async test runs on asyncio.
    return "asyncio"


class RunningServer:
    """A uvicorn server on a loopback port, in a background thread of the test process."""

    def __init__(self, app: Any, **config: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config.setdefault("log_level", "warning")
        config.setdefault("lifespan", "on")
        self.server = uvicorn.Server(uvicorn.Config(app, **config))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningServer]]:
    """Start ASGI apps on loopback ports: ``serve(app)`` returns the running server (``.url``, ``.port``)."""
    servers: list[RunningServer] = []

    def start(app: Any, **config: Any) -> RunningServer:
        server = RunningServer(app, **config).start()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.stop()


class RedisServer:
    """A real ``redis-server`` (Debian's package) on a free loopback port, without persistence."""

    def __init__(self, directory: str) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        for _ in range(5):  # the free port may be taken between choosing and binding it
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port: int = probe.getsockname()[1]
            args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--dir", directory]
            args += ["--appendonly", "no"]
            self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready():
                self.url = f"redis://127.0.0.1:{self.port}/0"
                return
            self.stop()
        raise RuntimeError("redis-server did not start")

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the test session (tests use distinct key prefixes)."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (Debian package redis-server; .ci/run installs it)")
    server = RedisServer(str(tmp_path_factory.mktemp("redis")))
    yield server
    server.stop()


class Captured:
    """What txtoken reported to OpenTelemetry during a test: finished spans and metric points."""

    def __init__(self, spans: Any, reader: Any, tracer_provider: Any) -> None:
        self._spans = spans
        self._reader = reader
        self.tracer_provider = tracer_provider

    def spans(self, name: str | None = None) -> list[Any]:
        """Finished spans (``opentelemetry.sdk.trace.ReadableSpan``), oldest first, optionally of one name."""
        return [s for s in self._spans.get_finished_spans() if name is None or s.name == name]

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        """``(attributes, point)`` of every data point of ``metric`` collected now (a counter point has ``value``)."""
        data = self._reader.get_metrics_data()
        found: list[tuple[dict[str, Any], Any]] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for item in scope.metrics:
                    if item.name == metric:
                        found.extend((dict(p.attributes), p) for p in item.data.data_points)
        return found

    def counts(self, metric: str) -> dict[tuple[tuple[str, Any], ...], int]:
        """A counter's values by sorted attribute items."""
        return {tuple(sorted(attrs.items())): point.value for attrs, point in self.points(metric)}


@pytest.fixture
def otel_capture() -> Iterator[Captured]:
    """txtoken instrumented with the OpenTelemetry SDK's in-memory span exporter and metric reader."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from txtoken import otel

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield Captured(exporter, reader, tracer_provider)
    finally:
        otel.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()


def assert_no_secret_in(spans: Any, secrets: Any) -> None:
    """Assert that no attribute or status of ``spans`` holds any of ``secrets`` or a long part of one."""
    parts = {p for secret in secrets for p in [secret, *secret.split(".")] if len(p) > 20}
    for span in spans:
        texts = [str(v) for v in span.attributes.values()] + [span.status.description or "", span.name]
        for text in texts:
            for part in parts:
                assert part not in text, (span.name, text)
