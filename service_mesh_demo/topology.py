"""The one description of the demo mesh: its services, ports, commands and environment.

The local runner (``txtoken demo``) and ``compose.yaml`` are both derived from :data:`SERVICES`, so what the tests
run locally is what docker compose starts. Locally every service listens on ``127.0.0.1`` at ``base_port +
offset``; in compose every service is its own host (its name) and listens on ``COMPOSE_BASE_PORT + offset``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "COMPOSE_BASE_PORT",
    "COMPOSE_DATA_DIR",
    "DEFAULT_BASE_PORT",
    "SERVICES",
    "SUPPLIER_AS",
    "TRUST_DOMAIN",
    "TTS_IDENTIFIER",
    "Service",
    "service_env",
    "workload_id",
]

TRUST_DOMAIN = "shop.example"
#: The Txn-Token Service's identifier: the audience of workload credentials and the ``iss`` of Txn-Tokens.
TTS_IDENTIFIER = f"https://tts.{TRUST_DOMAIN}"
#: The authorization server of the supplier, another domain: the audience of inventory's second projected token.
SUPPLIER_AS = "https://as.supplier.example"
DEFAULT_BASE_PORT = 8700
COMPOSE_BASE_PORT = 8700
#: Where the shared demo data (platform keys, projected tokens, TTS keys) lives inside the compose containers.
COMPOSE_DATA_DIR = "/var/run/demo"


@dataclass(frozen=True)
class Service:
    """One process of the mesh.

    ``credential`` is how the workload receives its platform credential: ``file`` (a projected service-account token
    re-read on rotation, as Kubernetes delivers it), ``env`` (an environment variable), or None (it never calls the
    Txn-Token Service). ``extra_tokens`` are further projected tokens beside ``token`` (file name → audience), for
    authorization servers of other domains. ``needs`` lists the services it calls, whose addresses it gets in its
    environment. ``binaries`` are the programs other than Python it runs (the local runner leaves the service out,
    and says so, when one is not on the PATH; the compose image has them all).
    """

    name: str
    module: str
    offset: int
    protocol: Literal["http", "grpc"]
    credential: Literal["file", "env"] | None = None
    needs: tuple[str, ...] = ()
    workload_id: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    published: bool = False  # reachable from the host under compose (the IdP and the gateway: what curl needs)
    extra_tokens: dict[str, str] = field(default_factory=dict)
    binaries: tuple[str, ...] = ()

    @property
    def command(self) -> list[str]:
        """The same command locally and in compose: ``python -m service_mesh_demo NAME``."""
        return ["python", "-m", "service_mesh_demo", self.name]


def workload_id(name: str) -> str:
    """The Workload Identifier of a demo workload (its WIT's ``sub``)."""
    return f"spiffe://{TRUST_DOMAIN}/ns/shop/sa/{name}"


SERVICES: tuple[Service, ...] = (
    Service("platform", "service_mesh_demo.platform", 9, "http"),
    Service("idp", "service_mesh_demo.idp", 1, "http", published=True),
    Service("tts", "service_mesh_demo.tts", 2, "http", needs=("platform", "idp")),  # it reads the IdP's JWKS file
    Service("supplier", "service_mesh_demo.supplier", 6, "http", needs=("platform",)),
    Service("shipping", "service_mesh_demo.shipping", 7, "http", needs=("tts", "gateway"), binaries=("nginx", "node")),
    Service(
        "payments",
        "service_mesh_demo.payments",
        5,
        "http",
        credential="file",
        needs=("tts", "gateway"),
        workload_id=workload_id("payments"),
    ),
    Service(
        "inventory",
        "service_mesh_demo.inventory",
        4,
        "grpc",
        credential="file",
        needs=("tts", "payments", "supplier", "gateway"),
        workload_id=workload_id("inventory"),
        extra_tokens={"supplier-token": SUPPLIER_AS},
    ),
    Service(
        "orders",
        "service_mesh_demo.orders",
        3,
        "http",
        credential="env",
        needs=("tts", "inventory", "shipping", "gateway"),
        workload_id=workload_id("orders"),
    ),
    Service(
        "gateway",
        "service_mesh_demo.gateway",
        0,
        "http",
        credential="file",
        needs=("idp", "tts", "orders"),
        workload_id=workload_id("gateway"),
        published=True,
    ),
)
"""In start order: each service starts after the ones it needs (the gateway's viewer is needed only for reports)."""

BY_NAME = {service.name: service for service in SERVICES}


def _url(target: Service, host: str, port: int) -> str:
    return f"{host}:{port}" if target.protocol == "grpc" else f"http://{host}:{port}"


def service_env(service: Service, *, base_port: int, data_dir: str | Path, compose: bool = False) -> dict[str, str]:
    """The environment a service runs with: its port, the addresses of what it needs, where its data is.

    An ``env`` credential is not included: it is a secret the runner (or the compose ``environment`` entry fed from
    the platform's output) adds when it starts the process.
    """
    env = {
        "DEMO_SERVICE": service.name,
        "DEMO_TRUST_DOMAIN": TRUST_DOMAIN,
        "DEMO_HOST": "0.0.0.0" if compose else "127.0.0.1",  # noqa: S104 - containers listen on their own network
        "DEMO_PORT": str(base_port + service.offset),
        "DEMO_DATA_DIR": str(data_dir),
        **service.extra_env,
    }
    if service.workload_id:
        env["DEMO_WORKLOAD_ID"] = service.workload_id
        # The address others call it at: its WPT audience (HTTP: the service URL; gRPC: the authority).
        env["DEMO_ADDRESS"] = _url(service, service.name if compose else "127.0.0.1", base_port + service.offset)
    if service.credential == "file":
        # Compose mounts only this workload's token volume, where Kubernetes projects it; locally it is a folder.
        folder = "/var/run/secrets/tokens" if compose else Path(data_dir) / "tokens" / service.name
        env["DEMO_CREDENTIAL_FILE"] = f"{folder}/token"
    for name in service.needs:
        target = BY_NAME[name]
        host = name if compose else "127.0.0.1"
        env[f"DEMO_{name.upper()}_URL"] = _url(target, host, base_port + target.offset)
    return env
