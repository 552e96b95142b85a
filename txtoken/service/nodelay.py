"""uvicorn's HTTP protocols with ``TCP_NODELAY`` set on every accepted connection, for ``--workers`` > 1.

With more than one worker, uvicorn binds the listening socket itself and its ``proto`` is left at 0; asyncio enables
``TCP_NODELAY`` only on sockets that report ``IPPROTO_TCP``, so Nagle's algorithm stays on and every keep-alive
response after the first waits for the client's delayed ACK: about 40 ms per request on Linux (uvicorn issue 3149,
open in uvicorn 0.54). ``benchmarks/issue.py --workers 2`` shows it: 2 workers served 0.2 of one worker's rate
before this, and the ``bare`` endpoint on the same server the same. One worker is unaffected (asyncio binds there).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HTTP_PROTOCOL", "NoDelayH11Protocol", "set_nodelay"]

#: The protocol class as uvicorn's ``http`` option names it (imported again in each worker process).
HTTP_PROTOCOL = "txtoken.service.nodelay:NoDelayH11Protocol"


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on the TCP socket under ``transport`` (other sockets are left alone)."""
    sock: Any = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with ``TCP_NODELAY`` on the connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)
