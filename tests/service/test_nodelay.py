"""``txtoken serve --workers N``: accepted connections get TCP_NODELAY although uvicorn's listener says proto 0."""

from __future__ import annotations

import asyncio
import socket

from txtoken.service.nodelay import set_nodelay


def _listener_as_uvicorn_binds_it() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # proto left at 0, as uvicorn's Config.bind_socket
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


async def _accepted_nodelay(apply: bool) -> int:
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if apply:
                set_nodelay(transport)
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    listener = _listener_as_uvicorn_binds_it()
    server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
    try:
        _, writer = await asyncio.open_connection(*listener.getsockname())
        value = await asyncio.wait_for(accepted, 10)
        writer.close()
        return value
    finally:
        server.close()
        await server.wait_closed()


def test_a_pre_bound_listener_loses_nodelay_and_set_nodelay_restores_it() -> None:
    assert asyncio.run(_accepted_nodelay(apply=False)) == 0  # the uvicorn issue this works around
    assert asyncio.run(_accepted_nodelay(apply=True)) != 0


def test_set_nodelay_leaves_a_unix_socket_alone() -> None:
    class Transport(asyncio.BaseTransport):
        def __init__(self, sock: socket.socket) -> None:
            super().__init__({"socket": sock})

    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        set_nodelay(Transport(left))  # no TCP option on a Unix socket: no error either
