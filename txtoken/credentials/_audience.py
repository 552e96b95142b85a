"""The common shape of sources whose credential is issued for an audience (SPIFFE, metadata service, GitHub)."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable

from txtoken.credentials._cache import CredentialCache
from txtoken.credentials.base import Credential
from txtoken.errors import ConfigurationError

__all__ = ["AudienceSource"]


class AudienceSource(ABC):
    """Credentials for ``audience`` (normally the TTS identifier) or for the audience given to :meth:`get`, each
    audience cached on its own."""

    def __init__(self, audience: str, *, refresh_margin: float, clock: Callable[[], float]) -> None:
        if not audience:
            raise ConfigurationError(f"{type(self).__name__} needs an audience (the TTS identifier)")
        self.audience = audience
        self._clock = clock
        self._cache: CredentialCache[str] = CredentialCache(refresh_margin=refresh_margin, clock=clock)

    def get(self, audience: str | None = None) -> Credential:
        """The credential for ``audience`` (default: the configured one)."""
        aud = self._audience(audience)
        return self._cache.get(aud, functools.partial(self._fetch, aud))

    async def aget(self, audience: str | None = None) -> Credential:
        """The credential for ``audience``, without blocking the event loop."""
        aud = self._audience(audience)
        return await self._cache.aget(aud, functools.partial(self._fetch, aud))

    def _audience(self, audience: str | None) -> str:
        if audience is None:
            return self.audience
        if not audience:
            raise ConfigurationError("the requested audience is empty")
        return audience

    @abstractmethod
    def _fetch(self, audience: str) -> Credential:
        """Fetch a new credential for ``audience`` (blocking); raise CredentialUnavailable when it cannot be had."""
