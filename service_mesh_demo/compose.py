"""``compose.yaml``, generated from the topology.

    python -m service_mesh_demo.compose > service_mesh_demo/compose.yaml

Each service is its own container, on a private network, running the same command as locally. Each workload's token
is a volume mounted where Kubernetes projects it (``/var/run/secrets/tokens``), written by the platform container;
the keys, JWKS and the environment credential are volumes shared the same way. Only the gateway (and its viewer) is
published to the host.
"""

from __future__ import annotations

from typing import Any

import yaml

from service_mesh_demo.topology import COMPOSE_BASE_PORT, COMPOSE_DATA_DIR, SERVICES, Service, service_env

__all__ = ["compose_document", "render"]

PROJECTED_TOKENS = "/var/run/secrets/tokens"
_ORDER = [service.name for service in SERVICES]


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


def compose_document() -> dict[str, Any]:
    services: dict[str, Any] = {}
    volumes: dict[str, Any] = {}
    for service in SERVICES:
        port = COMPOSE_BASE_PORT + service.offset
        entry: dict[str, Any] = {
            "build": {"context": "..", "dockerfile": "service_mesh_demo/Dockerfile"},
            "image": "txtoken-demo:latest",
            "command": service.command,
            "environment": service_env(service, base_port=COMPOSE_BASE_PORT, data_dir=COMPOSE_DATA_DIR, compose=True),
            "expose": [str(port)],
            "networks": ["mesh"],
            "restart": "on-failure",  # a workload started before the platform wrote its credential tries again
        }
        earlier = [name for name in service.needs if _ORDER.index(name) < _ORDER.index(service.name)]
        if service.name != "platform":
            earlier = ["platform", *[name for name in earlier if name != "platform"]]
        entry["depends_on"] = earlier
        mounts = _volumes(service)
        if mounts:
            entry["volumes"] = mounts
            volumes.update({mount.split(":", 1)[0]: {} for mount in mounts})
        if service.name == "gateway":
            entry["ports"] = [f"{port}:{port}"]
        services[service.name] = entry
    return {"services": services, "networks": {"mesh": {}}, "volumes": dict(sorted(volumes.items()))}


def render() -> str:
    header = "# Generated from service_mesh_demo/topology.py by `python -m service_mesh_demo.compose`; do not edit.\n"
    return header + yaml.safe_dump(compose_document(), sort_keys=False, width=120)


if __name__ == "__main__":
    print(render(), end="")
