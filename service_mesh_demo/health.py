"""Is a service of the mesh ready? The one check behind the local runner's start-up wait and compose's healthchecks.

    python -m service_mesh_demo.health     # inside a service's container: exit 0 once it serves

An HTTP service is ready when ``/healthz`` answers 200; the gRPC one when its port accepts connections.
"""

from __future__ import annotations

import os
import socket
import sys

import httpx

from service_mesh_demo.topology import BY_NAME, Service

__all__ = ["ready"]


def ready(service: Service, host: str, port: int) -> bool:
    """Whether ``service`` listening at ``host:port`` serves."""
    try:
        if service.protocol == "grpc":
            with socket.create_connection((host, port), timeout=0.5):
                return True
        return httpx.get(f"http://{host}:{port}/healthz", timeout=1.0).status_code == 200
    except (OSError, httpx.HTTPError):
        return False


def main() -> int:
    """Check the service this container runs (its ``DEMO_SERVICE`` and ``DEMO_PORT``)."""
    service = BY_NAME[os.environ["DEMO_SERVICE"]]
    return 0 if ready(service, "127.0.0.1", int(os.environ["DEMO_PORT"])) else 1


if __name__ == "__main__":
    sys.exit(main())
