"""A Docker engine of the test's own, and the demo image built offline, for the compose test.

The engine is a ``dockerd`` with its own data and exec roots in a temporary folder (a tmpfs of its own where it can
mount one: removing an image's files from this disk, one discard each, is slower than building it) and its own
unix socket (``DOCKER_HOST`` points at it). It creates no default bridge: the compose network is a bridge of its
own. It keeps Docker's iptables rules on (measured here: with ``--iptables=false`` the containers do not reach each
other once the host forwards with a DROP policy and bridged traffic passes iptables, as after any earlier dockerd
with its defaults). Docker's bridge driver resets those iptables chains when a daemon starts, so one engine runs
on the host at a time: the others wait for its lock (``~/.cache/txtoken/docker-engine.lock``). The base image is
Debian bookworm (Python 3.11) made with ``debootstrap`` and imported, cached as a tarball under
``~/.cache/txtoken`` (rebuilt when missing); the demo image and the TTS image install the project from a wheelhouse
made here with ``pip wheel``, with ``--no-index``: nothing is pulled from an image registry.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "txtoken-demo-base:bookworm"
DEMO_IMAGE = "txtoken-demo:latest"
TTS_IMAGE = "txtoken:test"
BASE_CACHE = Path.home() / ".cache" / "txtoken" / "demo-base-bookworm-nginx-node.tar"
#: What the image's build context holds (as the repository's .dockerignore lets through).
CONTEXT = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    ".dockerignore",
    "txtoken",
    "integrations",
    "service_mesh_demo",
    "deploy",
)
TOOLS = ("dockerd", "docker", "docker-compose")
LOCK = BASE_CACHE.with_name("docker-engine.lock")
LOCK_WAIT = 1200.0


class EngineUnavailable(Exception):
    """Docker cannot run here; the message says why (the test is skipped with it)."""


def why_not_available() -> str | None:
    """Why no engine can be started here, or None when it can be tried."""
    if os.geteuid() != 0:
        return "dockerd needs root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not BASE_CACHE.exists() and shutil.which("debootstrap") is None:
        missing.append("debootstrap")
    if missing:
        return f"missing {', '.join(missing)}: `apt-get install docker.io docker-compose debootstrap` (.ci/run does)"
    return None


class Engine:
    """A running ``dockerd`` of our own; ``run`` calls the docker tools against it. Always ``stop`` it."""

    def __init__(self) -> None:
        # A short path: containerd's socket lives under the exec root, and unix socket paths are short.
        self.dir = Path(tempfile.mkdtemp(prefix="txd-", dir="/tmp"))
        mount = ["mount", "-t", "tmpfs", "-o", "mode=0700,size=8g", "tmpfs", str(self.dir)]
        self.tmpfs = subprocess.run(mount, capture_output=True, timeout=30, check=False).returncode == 0
        self.socket = self.dir / "docker.sock"
        self.env = {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.socket}",
            "DOCKER_CONFIG": str(self.dir / "config"),
            "DOCKER_BUILDKIT": "0",  # the classic builder: no buildx plugin needed
            "COMPOSE_DOCKER_CLI_BUILD": "0",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.lock: IO[str] | None = None

    def _lock(self) -> None:
        """Wait (bounded) until no other engine of this test runs on the host."""
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        self.lock = LOCK.open("a")
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"another engine of this test held {LOCK} for {LOCK_WAIT:.0f}s") from None
                time.sleep(1)

    def start(self, timeout: float = 60) -> None:
        self._lock()
        log = (self.dir / "dockerd.log").open("wb")
        self.process = subprocess.Popen(
            [
                "dockerd",
                f"--data-root={self.dir / 'root'}",
                f"--exec-root={self.dir / 'exec'}",
                f"--host=unix://{self.socket}",
                f"--pidfile={self.dir / 'dockerd.pid'}",
                "--bridge=none",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EngineUnavailable(f"dockerd exited at start:\n{self.log_tail()}")
            if self.socket.exists() and self.run(["docker", "version"], check=False, timeout=10).returncode == 0:
                return
            time.sleep(0.5)
        raise EngineUnavailable(f"dockerd did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        text = (self.dir / "dockerd.log").read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def run(
        self, command: Sequence[str], *, timeout: float, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            list(command), env=self.env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def stop(self, timeout: float = 30) -> None:
        """Stop the daemon (it stops its containers) and remove its folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.tmpfs:
            subprocess.run(["umount", "--lazy", str(self.dir)], capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.lock is not None:
            self.lock.close()  # releases the host-wide lock

    def import_base_image(self) -> None:
        """Debian bookworm with python3, from the cache or made now with debootstrap (about a minute)."""
        if not BASE_CACHE.exists():
            rootfs = self.dir / "rootfs"
            include = "--include=python3,python3-venv,ca-certificates,nginx,nodejs"
            self.run(["debootstrap", "--variant=minbase", include, "bookworm", str(rootfs)], timeout=900)
            BASE_CACHE.parent.mkdir(parents=True, exist_ok=True)
            staged = BASE_CACHE.with_suffix(f".{os.getpid()}.tmp")
            self.run(["tar", "-C", str(rootfs), "-cf", str(staged), "."], timeout=300)
            os.replace(staged, BASE_CACHE)  # whole or absent: another run may be reading it
            shutil.rmtree(rootfs, ignore_errors=True)
        self.run(["docker", "import", str(BASE_CACHE), BASE_IMAGE], timeout=300)

    def build_images(self) -> None:
        """The demo image (service_mesh_demo/Dockerfile) and the TTS image (deploy/Dockerfile), offline: a wheelhouse
        in the build context, ``--no-index``."""
        context = self.dir / "context"
        for name in CONTEXT:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                context.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, context / name)
        # The project with its demo extra (a superset of the TTS's), and hatchling: pip builds it from source.
        wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(context / "wheelhouse")]
        self.run([*wheel, f"{context}[demo]", "hatchling>=1.25"], timeout=600)
        build_args = [f"BASE_IMAGE={BASE_IMAGE}", "PIP_NO_INDEX=1", "PIP_FIND_LINKS=/src/wheelhouse"]
        for dockerfile, tag in (("service_mesh_demo/Dockerfile", DEMO_IMAGE), ("deploy/Dockerfile", TTS_IMAGE)):
            arguments = [argument for value in build_args for argument in ("--build-arg", value)]
            command = ["docker", "build", "--quiet", "--file", str(context / dockerfile), *arguments, "--tag", tag]
            self.run([*command, str(context)], timeout=900)
