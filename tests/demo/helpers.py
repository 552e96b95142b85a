"""Helpers of the demo tests: a free range of loopback ports for a mesh, and what a JWT looks like in a log."""

from __future__ import annotations

import re
import socket

from service_mesh_demo.topology import SERVICES

__all__ = ["JWT", "free_base_port"]

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")
SPAN = max(service.offset for service in SERVICES) + 1


def free_base_port() -> int:
    """A base port whose whole range of the mesh is free on loopback."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base: int = probe.getsockname()[1]
        if base + SPAN > 65535:
            continue
        try:
            for port in range(base, base + SPAN):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")
