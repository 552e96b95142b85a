"""A key pair registered with the TTS: the workload signs its own short-lived RFC 7523 client assertion.

The assertion's claims are those of RFC 7523 §3 as tightened by draft-ietf-oauth-rfc7523bis: ``iss`` = ``sub`` = the
workload identifier (its ``client_id``), ``aud`` = the TTS's issuer identifier as a single string, ``iat``, ``exp``
and a random ``jti``. The header ``typ`` is ``client-authentication+jwt`` (rfc7523bis explicit typing, which keeps a
client assertion from being mistaken for any other JWT); pass ``typ="JWT"`` for a TTS that predates it.

By default every call signs a new assertion with a new ``jti`` (``single_use=True``), as OpenID Connect requires of
``private_key_jwt`` assertions and so that a TTS keeping a ``jti`` replay cache accepts each request. With
``single_use=False`` an assertion is reused, like any other credential, until shortly before it expires.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from txtoken.credentials._cache import DEFAULT_REFRESH_MARGIN, CredentialCache
from txtoken.credentials.base import Credential
from txtoken.errors import ConfigurationError
from txtoken.keys import SigningKey
from txtoken.mint import encode_jws

__all__ = ["CLIENT_ASSERTION_TYP", "MAX_ASSERTION_LIFETIME", "KeyPairAssertionSource"]

CLIENT_ASSERTION_TYP = "client-authentication+jwt"
#: Longest lifetime, in seconds, a client assertion may be given.
MAX_ASSERTION_LIFETIME = 300


class KeyPairAssertionSource:
    """Client assertions for ``workload_id``, addressed to the TTS ``audience``, signed with ``key``.

    The TTS must hold the public key for ``workload_id`` (its JWK, ``kid`` = RFC 7638 thumbprint). To load the key
    from a file: ``KeySet.load(path).active``.
    """

    def __init__(
        self,
        key: SigningKey,
        *,
        workload_id: str,
        audience: str,
        lifetime: int = 60,
        typ: str = CLIENT_ASSERTION_TYP,
        single_use: bool = True,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not workload_id:
            raise ConfigurationError("the key pair source needs the workload identifier (the assertion's iss and sub)")
        if not audience:
            raise ConfigurationError("the key pair source needs the TTS identifier as audience")
        if not 0 < lifetime <= MAX_ASSERTION_LIFETIME:
            raise ConfigurationError(f"a client assertion's lifetime must be 1 to {MAX_ASSERTION_LIFETIME} seconds")
        self.key = key
        self.workload_id = workload_id
        self.audience = audience
        self.lifetime = lifetime
        self.typ = typ
        self.single_use = single_use
        self._clock = clock
        self._cache: CredentialCache[None] = CredentialCache(refresh_margin=refresh_margin, clock=clock)

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(workload_id={self.workload_id!r}, audience={self.audience!r}, kid={self.key.kid!r})"

    def get(self) -> Credential:
        if self.single_use:
            return self._sign()
        return self._cache.get(None, self._sign)

    async def aget(self) -> Credential:
        # Signing is CPU-bound and takes microseconds: no thread needed.
        return self.get()

    def _sign(self) -> Credential:
        iat = int(self._clock())
        exp = iat + self.lifetime
        claims = {
            "iss": self.workload_id,
            "sub": self.workload_id,
            "aud": self.audience,
            "iat": iat,
            "exp": exp,
            "jti": secrets.token_urlsafe(18),
        }
        return Credential(encode_jws(claims, self.key, typ=self.typ), float(exp))
