"""The workload's own WIMSE identity: its Workload Identity Token and the private key of the WIT's ``cnf.jwk``.

Two sources, both refreshing before expiry through the credential cache (single-flight, like every source):

- :class:`WitFileSource`: a WIT file and a key file that an agent (SPIFFE-style) writes and rotates; both are
  re-read when they change;
- :class:`TokenServiceWitSource`: the token service's ``/wit`` endpoint (:mod:`txtoken.service.wit`), with a new key
  generated for every WIT, authenticated with the workload's credential exactly as for ``/token``.

Either way the WIT's ``cnf.jwk`` must be the key's public half, or the identity is refused as unavailable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, cast, runtime_checkable

import httpx

from txtoken.claims import CLIENT_ASSERTION_TYPE_JWT_BEARER
from txtoken.credentials._cache import DEFAULT_REFRESH_MARGIN, CredentialCache
from txtoken.credentials._jwt import jwt_credential, unverified_claims
from txtoken.credentials.base import Credential, CredentialSource
from txtoken.credentials.file import FileCredentialSource
from txtoken.errors import ConfigurationError, CredentialUnavailable, WitKeyInvalid, oauth_error_class
from txtoken.keys import Algorithm, KeySet, SigningKey, thumbprint
from txtoken.wimse.proof import create_key_proof
from txtoken.wimse.wit import public_proof_key

__all__ = ["TokenServiceWitSource", "WitFileSource", "WorkloadIdentity", "WorkloadIdentitySource"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadIdentity(Credential):
    """A WIT (``value``, expiring at ``expires_at``), the workload it names and the key that signs its WPTs."""

    key: SigningKey = field(repr=False)
    workload: str

    @property
    def wit(self) -> str:
        return self.value


@runtime_checkable
class WorkloadIdentitySource(Protocol):
    """Gives the workload's current WIT and key, refreshed before the WIT expires."""

    def get(self) -> WorkloadIdentity:
        """The current identity (may block on I/O). Raises :class:`~txtoken.errors.CredentialUnavailable`."""

    async def aget(self) -> WorkloadIdentity:
        """The current identity, without blocking the event loop."""


def workload_identity(wit: str, key: SigningKey, *, origin: str, now: float | None = None) -> WorkloadIdentity:
    """Pair a WIT with its key: the WIT must be an unexpired JWT whose ``cnf.jwk`` is ``key``'s public half; the key
    is bound to the ``cnf.jwk.alg`` the WPTs must use."""
    credential = jwt_credential(wit, origin=origin, now=now)
    claims = unverified_claims(wit) or {}
    cnf = claims.get("cnf")
    try:
        public, alg = public_proof_key(cnf.get("jwk") if isinstance(cnf, dict) else None, what=f"{origin}: cnf.jwk")
    except WitKeyInvalid as exc:
        raise CredentialUnavailable(exc.message) from None
    if thumbprint(public.to_jwk()) != thumbprint(key.verification_key.to_jwk()):
        raise CredentialUnavailable(f"{origin}: the WIT's cnf.jwk is not the workload key (rotation in progress?)")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise CredentialUnavailable(f"{origin}: the WIT has no sub")
    try:
        bound = SigningKey(cast(Algorithm, alg), key.private_key, key.kid)
    except ConfigurationError as exc:
        raise CredentialUnavailable(f"{origin}: {exc.message}") from None
    return WorkloadIdentity(wit, credential.expires_at, key=bound, workload=sub)


def _private_key(text: str, origin: str) -> SigningKey:
    try:
        if text.startswith("-----BEGIN"):
            return SigningKey.from_pem(text)
        data = json.loads(text)
        if isinstance(data, dict) and "keys" in data:
            return KeySet.from_private_jwks(data).active
        if isinstance(data, dict):
            return SigningKey.from_jwk(data)
    except (ValueError, ConfigurationError):
        pass
    raise CredentialUnavailable(f"{origin} holds no private key (PEM, JWK or private JWKS)")


class WitFileSource:
    """A WIT file and its key file (PEM, private JWK or private JWKS), re-read when either changes."""

    def __init__(
        self,
        wit_path: str,
        key_path: str,
        *,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._wit = FileCredentialSource(wit_path, refresh_margin=refresh_margin, clock=clock)
        self._key = FileCredentialSource(key_path, jwt=False, refresh_margin=refresh_margin, clock=clock)
        self._clock = clock
        self._last: WorkloadIdentity | None = None
        self._last_key_text: str | None = None

    def __repr__(self) -> str:
        return f"WitFileSource({str(self._wit.path)!r}, {str(self._key.path)!r})"

    def get(self) -> WorkloadIdentity:
        return self._pair(self._wit.get(), self._key.get())

    async def aget(self) -> WorkloadIdentity:
        return self._pair(await self._wit.aget(), await self._key.aget())

    def _pair(self, wit: Credential, key_text: Credential) -> WorkloadIdentity:
        last = self._last
        if last is not None and last.value == wit.value and self._last_key_text == key_text.value:
            return last
        origin = f"the WIT file {self._wit.path}"
        key = _private_key(key_text.value, f"the key file {self._key.path}")
        identity = workload_identity(wit.value, key, origin=origin, now=self._clock())
        self._last, self._last_key_text = identity, key_text.value
        return identity


class TokenServiceWitSource:
    """WITs from the token service's ``/wit`` endpoint, each for a freshly generated key of ``alg``.

    ``credential`` authenticates the workload as for ``/token`` (a :class:`CredentialSource` or a function returning
    a client assertion); ``audience`` is the token service's identifier (the key proof's ``aud``). A WIT is fetched
    again ``refresh_margin`` seconds before it expires (or halfway through, when it lives shorter than that).
    """

    def __init__(
        self,
        wit_endpoint: str,
        *,
        credential: CredentialSource | Callable[[], str],
        audience: str,
        alg: Algorithm = "ES256",
        timeout: float = 5.0,
        allow_http: bool = False,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        scheme = httpx.URL(wit_endpoint).scheme
        if scheme != "https" and not (allow_http and scheme == "http"):
            raise ConfigurationError("the WIT endpoint must use https (allow_http=True for loopback and tests)")
        self._endpoint = wit_endpoint
        self._credential = credential
        self._audience = audience
        self._alg = alg
        self._timeout = timeout
        self._clock = clock
        self._cache: CredentialCache[None] = CredentialCache(refresh_margin=refresh_margin, clock=clock)
        self.fetch_count = 0

    def __repr__(self) -> str:
        return f"TokenServiceWitSource({self._endpoint!r})"

    def get(self) -> WorkloadIdentity:
        return cast(WorkloadIdentity, self._cache.get(None, self._fetch))

    async def aget(self) -> WorkloadIdentity:
        return cast(WorkloadIdentity, await self._cache.aget(None, self._fetch))

    def _assertion(self) -> str:
        source = self._credential
        return source.get().value if isinstance(source, CredentialSource) else source()

    def _fetch(self) -> WorkloadIdentity:
        self.fetch_count += 1
        key = SigningKey.generate(self._alg)
        form = {
            "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
            "client_assertion": self._assertion(),
            "proof": create_key_proof(key, audience=self._audience),  # the wall clock, as the service checks it
        }
        try:
            with httpx.Client(timeout=self._timeout, follow_redirects=False, trust_env=False) as client:
                response = client.post(self._endpoint, data=form)
        except httpx.HTTPError as exc:
            raise CredentialUnavailable(f"the WIT endpoint cannot be reached ({type(exc).__name__})") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            error = body.get("error") if isinstance(body, dict) else None
            code = oauth_error_class(error).code if isinstance(error, str) else "no OAuth error"
            raise CredentialUnavailable(f"the WIT endpoint answered HTTP {response.status_code} ({code})")
        wit = body.get("wit") if isinstance(body, dict) else None
        if not isinstance(wit, str):
            raise CredentialUnavailable("the WIT endpoint's answer has no wit")
        return workload_identity(wit, key, origin="the WIT endpoint's WIT", now=self._clock())
