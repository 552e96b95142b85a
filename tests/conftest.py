"""Shared fixtures: the anyio backend and real uvicorn servers on loopback."""

from __future__ import annotations

import socket
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
