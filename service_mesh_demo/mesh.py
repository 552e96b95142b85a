"""Where the mesh runs: locally, every service of the topology as its own process on loopback ports (:class:`Mesh`);
or under compose, seen from a container on its network (:class:`ComposeNetwork`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from service_mesh_demo.health import ready
from service_mesh_demo.topology import BY_NAME, COMPOSE_BASE_PORT, COMPOSE_DATA_DIR, SERVICES, Service, service_env

__all__ = ["ComposeNetwork", "Mesh", "MeshAddresses", "MeshError"]

READY_TIMEOUT = 30.0


class MeshError(RuntimeError):
    """A service did not start; the message names it and ends with its log."""


class MeshAddresses(Protocol):
    """Where the scenario finds a running mesh: each service's URL, and the data directory (keys, tokens)."""

    @property
    def data_dir(self) -> Path: ...

    def url(self, name: str) -> str: ...


@dataclass(frozen=True)
class ComposeNetwork:
    """The compose mesh seen from a container on its network: each service is the host of its name, and the
    container mounts the volumes the scenario reads (the gateway's projected token, the TTS's keys)."""

    data_dir: Path = Path(COMPOSE_DATA_DIR)

    def url(self, name: str) -> str:
        return f"http://{name}:{COMPOSE_BASE_PORT + BY_NAME[name].offset}"


class Mesh:
    """The mesh's processes; a context manager that starts them in order and always stops them all."""

    def __init__(self, data_dir: str | os.PathLike[str], *, base_port: int, log_level: str = "info") -> None:
        self.data_dir = Path(data_dir)
        self.base_port = base_port
        self.log_level = log_level
        self.log_dir = self.data_dir / "logs"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        #: Services left out, with why: a program they run is not on the PATH (the compose image has them all).
        self.left_out = {
            service.name: f"{', '.join(missing)} not on the PATH"
            for service in SERVICES
            if (missing := [b for b in service.binaries if not _installed(b)])
        }

    def url(self, name: str) -> str:
        service = next(s for s in SERVICES if s.name == name)
        return f"http://127.0.0.1:{self.base_port + service.offset}"

    def env(self, service: Service) -> dict[str, str]:
        env = service_env(service, base_port=self.base_port, data_dir=self.data_dir)
        env = {**os.environ, **env, "DEMO_LOG_LEVEL": self.log_level}
        for name in self.left_out:
            env.pop(f"DEMO_{name.upper()}_URL", None)
        return env

    @property
    def services(self) -> list[Service]:
        """The services this mesh runs."""
        return [service for service in SERVICES if service.name not in self.left_out]

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for service in self.services:
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
            if ready(service, "127.0.0.1", port):
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


def _installed(program: str) -> bool:
    return shutil.which(program) is not None or Path("/usr/sbin", program).exists()
