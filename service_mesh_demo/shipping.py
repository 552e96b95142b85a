"""shipping: a service without txtoken (Node.js) behind nginx, which asks ``txtoken forward-auth`` in hop mode.

This launcher is the "pod": it writes the nginx configuration (the hop-mode blocks of docs/gateway.md), the
forward-auth configuration and policy, and runs the three processes; nginx listens on the service's port, the Node
app and forward-auth on loopback ports of their own. The policy binds the order id in the path to the Txn-Token's,
and each Txn-Token may book one shipment for its order once (``single_use``).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from service_mesh_demo.common import DemoEnv, configure_logging
from service_mesh_demo.topology import TTS_IDENTIFIER

__all__ = ["nginx_config", "run"]

APP = Path(__file__).with_name("shipping_app.js")
POLICY = """
[[rules]]
route = "POST /shipments/{order_id}"
scopes = ["orders.create"]
bind = { "path.order_id" = "order_id" }
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def nginx_config(prefix: Path, *, host: str, port: int, forward_auth: int, app: int) -> str:
    """nginx in the foreground: /healthz, and every other request through forward-auth to the app."""
    refused = "\n".join(
        f"""        location @txtoken_{status} {{
            default_type application/json;
            add_header Txtoken-Error $txtoken_error always;
            add_header Cache-Control no-store always;
            return {status} '{{"error":"$txtoken_error"}}';
        }}"""
        for status in (401, 403)
    )
    context = ("id", "sub", "scope", "requester", "tctx", "rctx")
    sets = "\n".join(f"            auth_request_set $txn_{n} $upstream_http_txn_{n};" for n in context)
    headers = "\n".join(f"            proxy_set_header Txn-{n.capitalize()} $txn_{n};" for n in context)
    temp = "\n".join(f"    {n}_temp_path {prefix / n};" for n in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp}
    server {{
        listen {host}:{port};
        location = /healthz {{ proxy_pass http://127.0.0.1:{app}; }}
        location = /_txtoken_check {{
            internal;
            proxy_pass http://127.0.0.1:{forward_auth};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Forwarded-Method $request_method;
            proxy_set_header X-Forwarded-Uri $request_uri;
        }}
        location / {{
            auth_request /_txtoken_check;
{sets}
            auth_request_set $txtoken_error $upstream_http_txtoken_error;
            error_page 401 = @txtoken_401;
            error_page 403 = @txtoken_403;
            error_page 500 = @txtoken_503;
{headers}
            proxy_pass http://127.0.0.1:{app};
        }}
{refused}
        location @txtoken_503 {{
            default_type application/json;
            return 503 '{{"error":"temporarily_unavailable"}}';
        }}
    }}
}}
"""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run() -> None:
    env = DemoEnv.load()
    configure_logging(env)
    nginx, node = shutil.which("nginx") or "/usr/sbin/nginx", shutil.which("node")
    if node is None or not Path(nginx).exists():
        sys.exit("shipping needs nginx and node on the PATH")
    folder = env.data_dir / "shipping"
    folder.mkdir(parents=True, exist_ok=True)
    forward_auth, app = _free_port(), _free_port()
    (folder / "policy.toml").write_text(POLICY, encoding="utf-8")
    (folder / "forward-auth.toml").write_text(
        f"""mode = "hop"
trust_domain = "{env.trust_domain}"
tts_identifier = "{TTS_IDENTIFIER}"
tts_jwks_uri = "{env.urls["tts"]}/.well-known/jwks.json"
allow_http = true  # the demo's network; https in production

[hop]
policy = "{folder / "policy.toml"}"
single_use = ["POST /shipments/{{order_id}}"]
""",
        encoding="utf-8",
    )
    (folder / "nginx.conf").write_text(
        nginx_config(folder, host=env.host, port=env.port, forward_auth=forward_auth, app=app), encoding="utf-8"
    )
    commands = [
        [node, str(APP), str(app), env.collector],
        [sys.executable, "-m", "txtoken", "forward-auth", "--config", str(folder / "forward-auth.toml")]
        + ["--port", str(forward_auth), "--log-level", "warning"],
        [nginx, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", "stderr"],
    ]
    signal.signal(signal.SIGTERM, _stop)
    children = [subprocess.Popen(command) for command in commands]  # noqa: S603 - fixed programs and arguments
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
