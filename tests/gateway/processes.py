"""Real processes for the forward-auth tests: nginx (Debian's package), the upstream without txtoken, and
``txtoken forward-auth``; each on a free loopback port, started as a non-daemon child and stopped by its PID."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).parent
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """A child process serving HTTP on ``port``; :meth:`stop` ends it by PID."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{argv[0]} did not listen on {port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", **kwargs)  # type: ignore[arg-type]


def upstream(tmp: Path) -> Process:
    port = free_port()
    return Process([sys.executable, str(HERE / "echo_upstream.py"), str(port)], port, tmp / "upstream.log")


def forward_auth(tmp: Path, config: str) -> Process:
    (tmp / "forward-auth.toml").write_text(config, encoding="utf-8")
    port = free_port()
    txtoken = Path(sys.executable).with_name("txtoken")
    argv = [str(txtoken), "forward-auth", "--config", str(tmp / "forward-auth.toml"), "--port", str(port)]
    return Process([*argv, "--log-level", "warning"], port, tmp / "forward-auth.log")


def nginx(tmp: Path, server: str) -> Process:
    """nginx in the foreground with ``server`` (the body of one ``server`` block; ``{port}`` is filled in)."""
    assert NGINX is not None
    port = free_port()
    prefix = tmp / "nginx"
    prefix.mkdir(exist_ok=True)
    temp = "\n".join(
        f"    {name}_temp_path {prefix / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = f"""
daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
{temp}
    server {{
        listen 127.0.0.1:{port};
{server}
    }}
}}
"""
    (prefix / "nginx.conf").write_text(conf, encoding="utf-8")
    argv = [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]
    return Process(argv, port, tmp / "nginx.log")
