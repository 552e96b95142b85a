"""Run the whole mesh locally: every service of the topology as its own process on loopback ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from service_mesh_demo.topology import SERVICES, Service, service_env

__all__ = ["Mesh", "MeshError"]

READY_TIMEOUT = 30.0


class MeshError(RuntimeError):
    """A service did not start; the message names it and ends with its log."""


class Mesh:
    """The mesh's processes; a context manager that starts them in order and always stops them all."""

    def __init__(self, data_dir: str | os.PathLike[str], *, base_port: int, log_level: str = "info") -> None:
        self.data_dir = Path(data_dir)
        self.base_port = base_port
        self.log_level = log_level
        self.log_dir = self.data_dir / "logs"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def url(self, name: str) -> str:
        service = next(s for s in SERVICES if s.name == name)
        return f"http://127.0.0.1:{self.base_port + service.offset}"

    def env(self, service: Service) -> dict[str, str]:
        env = service_env(service, base_port=self.base_port, data_dir=self.data_dir)
        return {**os.environ, **env, "DEMO_LOG_LEVEL": self.log_level}

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for service in SERVICES:
            log = (self.log_dir / f"{service.name}.log").open("wb")
            command = [sys.executable, *service.command[1:]]
            self.processes[service.name] = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command, env=self.env(service), stdout=log, stderr=subprocess.STDOUT
            )
            log.close()
            self._wait_ready(service)

    def _wait_ready(self, service: Service) -> None:
        port = self.base_port + service.offset
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.processes[service.name].poll() is not None:
                raise MeshError(f"{service.name} exited during start-up\n{self.log_tail(service.name)}")
            if _ready(service, port):
                return
            time.sleep(0.05)
        raise MeshError(f"{service.name} was not ready after {READY_TIMEOUT:.0f}s\n{self.log_tail(service.name)}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> Mesh:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _ready(service: Service, port: int) -> bool:
    try:
        if service.protocol == "grpc":
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200
    except (OSError, httpx.HTTPError):
        return False
