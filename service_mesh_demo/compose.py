"""``compose.yaml``, generated from the topology.

    python -m service_mesh_demo.compose > service_mesh_demo/compose.yaml

Each service is its own container, on a private network, running the same command as locally, with a healthcheck
(``python -m service_mesh_demo.health``, the check the local runner waits on); each starts once the services it
needs are healthy. Each workload's token is a volume mounted where Kubernetes projects it
(``/var/run/secrets/tokens``), written by the platform container; the keys, JWKS and the environment credential are
volumes shared the same way. Only what the ``curl`` commands need is published, on the host's loopback: the IdP and
the gateway (and its viewer), at the local runner's ports unless ``TXTOKEN_DEMO_IDP_PORT`` /
``TXTOKEN_DEMO_GATEWAY_PORT`` say otherwise. The ``scenario`` service (profile ``scenario``) runs the scenario from
inside the network: ``docker compose -f service_mesh_demo/compose.yaml run --rm scenario``.
"""

from __future__ import annotations

from typing import Any

import yaml

from service_mesh_demo.topology import COMPOSE_BASE_PORT, COMPOSE_DATA_DIR, SERVICES, Service, service_env

__all__ = ["compose_document", "host_port_variable", "render"]

PROJECTED_TOKENS = "/var/run/secrets/tokens"
HEALTHCHECK = ("CMD", "python", "-m", "service_mesh_demo.health")
_ORDER = [service.name for service in SERVICES]
_IMAGE = "txtoken-demo:latest"


def host_port_variable(service: Service) -> str:
    """The environment variable that moves a published service's port on the host."""
    return f"TXTOKEN_DEMO_{service.name.upper()}_PORT"


def _volumes(service: Service) -> list[str]:
    data = COMPOSE_DATA_DIR
    if service.name == "platform":
        mounts = [f"platform-keys:{data}/platform"]
        for workload in SERVICES:
            if workload.credential == "file":
                mounts.append(f"{workload.name}-token:{data}/tokens/{workload.name}")
            elif workload.credential == "env":
                mounts.append(f"{workload.name}-env:{data}/env/{workload.name}")
        return mounts
    if service.name == "idp":
        return [f"idp-keys:{data}/idp"]
    if service.name == "tts":
        return [f"tts-keys:{data}/tts", f"platform-keys:{data}/platform:ro", f"idp-keys:{data}/idp:ro"]
    if service.name == "gateway":  # validates access tokens with the IdP's keys, as the TTS does
        return [f"{service.name}-token:{PROJECTED_TOKENS}:ro", f"idp-keys:{data}/idp:ro"]
    if service.credential == "file":
        return [f"{service.name}-token:{PROJECTED_TOKENS}:ro"]
    if service.credential == "env":
        return [f"{service.name}-env:{data}/env/{service.name}:ro"]
    return []


def _healthy(names: list[str]) -> dict[str, Any]:
    return {name: {"condition": "service_healthy"} for name in names}


def _scenario() -> dict[str, Any]:
    """The scenario, run from inside the network; it reads the gateway's token and the TTS's keys (the replayed and
    expired tokens are made with them), as an attacker inside the mesh could."""
    data = COMPOSE_DATA_DIR
    return {
        "image": _IMAGE,
        "command": ["python", "-m", "service_mesh_demo", "scenario"],
        "networks": ["mesh"],
        "profiles": ["scenario"],
        "depends_on": _healthy(_ORDER),
        "volumes": [f"gateway-token:{data}/tokens/gateway:ro", f"tts-keys:{data}/tts:ro"],
    }


def compose_document() -> dict[str, Any]:
    services: dict[str, Any] = {}
    volumes: dict[str, Any] = {}
    for service in SERVICES:
        port = COMPOSE_BASE_PORT + service.offset
        entry: dict[str, Any] = {
            "build": {"context": "..", "dockerfile": "service_mesh_demo/Dockerfile"},
            "image": _IMAGE,
            "command": service.command,
            "environment": service_env(service, base_port=COMPOSE_BASE_PORT, data_dir=COMPOSE_DATA_DIR, compose=True),
            "expose": [str(port)],
            "networks": ["mesh"],
            "restart": "on-failure",
            "healthcheck": {
                "test": list(HEALTHCHECK),
                "interval": "2s",
                "timeout": "10s",
                "retries": 60,
                "start_period": "120s",
            },
        }
        earlier = [name for name in service.needs if _ORDER.index(name) < _ORDER.index(service.name)]
        if service.name != "platform":  # the platform writes every credential first
            earlier = ["platform", *[name for name in earlier if name != "platform"]]
        if earlier:
            entry["depends_on"] = _healthy(earlier)
        mounts = _volumes(service)
        if mounts:
            entry["volumes"] = mounts
            volumes.update({mount.split(":", 1)[0]: {} for mount in mounts})
        if service.published:  # on the host's loopback only
            entry["ports"] = [f"127.0.0.1:${{{host_port_variable(service)}:-{port}}}:{port}"]
        services[service.name] = entry
    services["scenario"] = _scenario()
    return {"services": services, "networks": {"mesh": {}}, "volumes": dict(sorted(volumes.items()))}


def render() -> str:
    header = "# Generated from service_mesh_demo/topology.py by `python -m service_mesh_demo.compose`; do not edit.\n"
    return header + yaml.safe_dump(compose_document(), sort_keys=False, width=120)


if __name__ == "__main__":
    print(render(), end="")
