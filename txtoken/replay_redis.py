"""A replay store in Redis, shared by every replica of a service (``pip install 'txtoken[redis]'``).

One atomic command per check: ``SET key 1 NX PX ttl`` stores the key with its expiry only if it is absent, so two
replicas that see the same ``jti`` at the same moment cannot both accept it. Redis drops each key when it expires.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from txtoken.errors import ConfigurationError, ReplayStoreUnavailable
from txtoken.extras import requires_extra

if TYPE_CHECKING:
    import redis
    import redis.asyncio

__all__ = ["RedisReplayStore"]


class RedisReplayStore:
    """A :class:`~txtoken.replay.ReplayStore` in Redis, for sync (``first_use``) and asyncio (``afirst_use``) callers.

    Give ``url`` (``redis://host:6379/0``, ``rediss://`` for TLS) or ready clients. Keys are stored under ``prefix``.
    An asyncio client is bound to its event loop: from a ``url``, each loop gets its own, closed by :meth:`aclose`
    on that loop (an application's shutdown).
    When Redis cannot be reached within ``timeout`` seconds the check fails closed with
    :class:`~txtoken.errors.ReplayStoreUnavailable` (503); ``fail_open=True`` accepts the identifier instead, which
    gives up replay protection while Redis is down: only for deployments that prefer availability.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        async_client: redis.asyncio.Redis | None = None,
        prefix: str = "txtoken:replay:",
        timeout: float = 1.0,
        fail_open: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        with requires_extra("redis", "RedisReplayStore"):
            import redis
            import redis.asyncio

        if url is None and client is None and async_client is None:
            raise ConfigurationError("RedisReplayStore needs a url or a client")
        self._url = url
        self._timeout = timeout
        self._client = client
        self._async_client = async_client
        self._loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = (
            weakref.WeakKeyDictionary()
        )
        self._prefix = prefix
        self._fail_open = fail_open
        self._clock = clock
        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)

    def _sync(self) -> redis.Redis:
        if self._client is None:
            import redis

            if self._url is None:
                raise ConfigurationError("RedisReplayStore has only an asyncio client; give a url or a client")
            self._client = redis.Redis.from_url(
                self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout
            )
        return self._client

    def _async(self) -> redis.asyncio.Redis:
        if self._async_client is not None:
            return self._async_client
        if self._url is None:
            raise ConfigurationError("RedisReplayStore has only a sync client; give a url or an async_client")
        loop = asyncio.get_running_loop()
        client = self._loop_clients.get(loop)
        if client is None:
            import redis.asyncio

            client = self._loop_clients[loop] = redis.asyncio.Redis.from_url(
                self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout
            )
        return client

    def _ttl_ms(self, expires_at: float) -> int:
        return max(1, math.ceil((expires_at - self._clock()) * 1000))

    def _unavailable(self) -> bool:
        if self._fail_open:
            return True
        raise ReplayStoreUnavailable("the replay store (Redis) cannot be reached")

    def first_use(self, key: str, expires_at: float) -> bool:
        try:
            stored = self._sync().set(self._prefix + key, b"1", nx=True, px=self._ttl_ms(expires_at))
        except self._errors:
            return self._unavailable()
        return bool(stored)

    async def afirst_use(self, key: str, expires_at: float) -> bool:
        try:
            stored = await self._async().set(self._prefix + key, b"1", nx=True, px=self._ttl_ms(expires_at))
        except self._errors:
            return self._unavailable()
        return bool(stored)

    def close(self) -> None:
        """Close the sync client's connections (an async client is closed with :meth:`aclose`)."""
        if self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        """Close the asyncio client's connections (the running loop's, for a store made from a url)."""
        client = self._async_client or self._loop_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
