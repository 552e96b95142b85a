"""A credential in an environment variable.

Discouraged in production (Workload Identity Practices §3.1, §5.1.2): the value is fixed for the life of the process,
so it cannot rotate, and every child process, debugger and crash reporter can see it. Outside development mode the
source logs a warning saying so, once, naming the variable and never its value.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

from txtoken.credentials._cache import DEFAULT_REFRESH_MARGIN, CredentialCache
from txtoken.credentials._jwt import jwt_credential
from txtoken.credentials.base import Credential
from txtoken.errors import ConfigurationError, CredentialUnavailable

__all__ = ["EnvCredentialSource"]

logger = logging.getLogger("txtoken.credentials")


class EnvCredentialSource:
    """The credential in the environment variable ``variable``.

    With ``jwt=True`` (the default) the value must be a JWT with an ``exp``; it is not served once expired. With
    ``jwt=False`` it is an opaque string without a known expiry. ``environ`` defaults to ``os.environ``.
    """

    def __init__(
        self,
        variable: str,
        *,
        development: bool = False,
        jwt: bool = True,
        environ: Mapping[str, str] | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not variable:
            raise ConfigurationError("the name of the environment variable is empty")
        self.variable = variable
        self.development = development
        self._jwt = jwt
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        self._cache: CredentialCache[None] = CredentialCache(refresh_margin=refresh_margin, clock=clock)
        self._warned = development
        self._warn_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.variable!r})"

    def get(self) -> Credential:
        self._warn_once()
        return self._cache.get(None, self._read)

    async def aget(self) -> Credential:
        self._warn_once()
        return await self._cache.aget(None, self._read)

    def _warn_once(self) -> None:
        if self._warned:
            return
        with self._warn_lock:
            if self._warned:
                return
            self._warned = True
            logger.warning(
                "workload credential read from the environment variable %s: environment variables are discouraged "
                "in production (static for the process lifetime, visible to the whole process tree); use a file "
                "or local API credential source, or pass development=True outside production",
                self.variable,
            )

    def _missing(self) -> str:
        return (
            f"the environment variable {self.variable} is not set or empty; set it to the workload's credential "
            "(or use a file or local API credential source)"
        )

    def _read(self) -> Credential:
        value = self._environ.get(self.variable, "").strip()
        if not value:
            raise CredentialUnavailable(self._missing())
        if not self._jwt:
            return Credential(value)
        return jwt_credential(value, origin=f"the environment variable {self.variable}", now=self._clock())
