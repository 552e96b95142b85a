"""The credential interface every source implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["Credential", "CredentialSource"]


@dataclass(frozen=True, slots=True)
class Credential:
    """A workload credential (normally a JWT), with its expiry when known. ``value`` is kept out of ``repr``."""

    value: str = field(repr=False)
    expires_at: float | None = None


@runtime_checkable
class CredentialSource(Protocol):
    """Gives the workload's current credential; sources cache within its lifetime and refresh before expiry."""

    def get(self) -> Credential:
        """The current credential (may block on I/O). Raises :class:`~txtoken.errors.CredentialUnavailable`."""

    async def aget(self) -> Credential:
        """The current credential, without blocking the event loop."""
