"""Helpers of the demo tests: a free range of loopback ports for a mesh, and what a JWT looks like in a log."""

from __future__ import annotations

import random
import re
import socket

from service_mesh_demo.topology import SERVICES

__all__ = ["JWT", "free_base_port"]

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")
SPAN = max(service.offset for service in SERVICES) + 1


def _ephemeral_ports() -> range:
    """The ports the kernel hands out for port 0 and for outgoing connections (Linux; the IANA range elsewhere)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as fh:
            low, high = (int(part) for part in fh.read().split())
    except (OSError, ValueError):
        low, high = 49152, 65535
    return range(low, high + 1)


def free_base_port() -> int:
    """A base port whose whole range of the mesh is free on loopback, and outside the ephemeral range.

    Outside it, no outgoing connection of the mesh's own services (nor a port-0 server of another test) can take one
    of the ports between this check and the moment each service binds it.
    """
    ephemeral = _ephemeral_ports()
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10_000, 30_000)
        if any(port in ephemeral for port in (base, base + SPAN - 1)):
            continue
        try:
            for port in range(base, base + SPAN):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")
