"""A minimal HTTP/1.1 client on asyncio streams: one connection per request, cheap enough for hundreds at once.

httpx's connection pool costs several seconds for 500 simultaneous connections; this costs milliseconds, so a
concurrency test measures the server, not the client.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


async def get_json(port: int, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        head, _, body = (await reader.read()).partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, json.loads(body)
    finally:
        writer.close()
        await writer.wait_closed()
