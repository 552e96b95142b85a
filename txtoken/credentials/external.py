"""Access tokens of another domain's authorization server, obtained with the workload's own credential.

The pattern every platform's workload identity federation follows (Workload Identity Practices; spec digest §4):
the workload presents its platform credential (any :class:`~txtoken.credentials.CredentialSource`) to an external
authorization server and gets an access token for the external audience. Three grants:

- :class:`JwtBearerGrant`: RFC 7523 §2.1, the credential is the ``assertion`` (the practices' recommended pattern);
- :class:`TokenExchangeGrant`: RFC 8693, the credential is the ``subject_token`` (the cloud security-token-service
  pattern);
- :class:`ClientCredentialsGrant`: RFC 6749 §4.4 with ``private_key_jwt`` client authentication (RFC 7523 §2.2;
  for example a :class:`~txtoken.credentials.KeyPairAssertionSource` whose audience is the external AS).

:class:`ExternalTokenSource` is itself a credential source: tokens are cached until shortly before they expire, one
fetch serves concurrent callers (threads and asyncio tasks), and :meth:`ExternalTokenSource.invalidate` drops a
token the external API refused. The Txn-Token never leaves the trust domain: nothing here sends it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx

from txtoken.claims import (
    CLIENT_ASSERTION_TYPE_JWT_BEARER,
    GRANT_TYPE_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_JWT as _TOKEN_TYPE_JWT,
)
from txtoken.client import oauth_error
from txtoken.credentials._cache import CredentialCache
from txtoken.credentials.base import Credential, CredentialSource
from txtoken.errors import ConfigurationError, TokenServiceError, TokenServiceUnavailable

__all__ = [
    "GRANT_TYPE_JWT_BEARER",
    "ClientCredentialsGrant",
    "ExternalTokenSource",
    "Grant",
    "JwtBearerGrant",
    "TokenExchangeGrant",
]

GRANT_TYPE_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class Grant(Protocol):
    """The form parameters of one token request (read the credential anew each time: it may have rotated)."""

    def form(self) -> dict[str, str]: ...


def _optional(**values: str | None) -> dict[str, str]:
    return {name: value for name, value in values.items() if value is not None}


def _client_authentication(client_id: str | None, client_assertion: CredentialSource | None) -> dict[str, str]:
    form = _optional(client_id=client_id)
    if client_assertion is not None:
        form["client_assertion_type"] = CLIENT_ASSERTION_TYPE_JWT_BEARER
        form["client_assertion"] = client_assertion.get().value
    return form


@dataclass(frozen=True)
class JwtBearerGrant:
    """RFC 7523 §2.1: ``assertion`` = the workload's platform credential (one JWT whose ``aud`` is the external AS).
    ``client_id`` / ``client_assertion`` authenticate a client as well, where the AS wants one."""

    assertion: CredentialSource
    scope: str | None = None
    client_id: str | None = None
    client_assertion: CredentialSource | None = None

    def form(self) -> dict[str, str]:
        return {
            "grant_type": GRANT_TYPE_JWT_BEARER,
            "assertion": self.assertion.get().value,
            **_optional(scope=self.scope),
            **_client_authentication(self.client_id, self.client_assertion),
        }


@dataclass(frozen=True)
class TokenExchangeGrant:
    """RFC 8693: ``subject_token`` = the workload's platform credential, for an access token to ``audience`` and/or
    ``resource`` of the external domain."""

    subject_token: CredentialSource
    audience: str | None = None
    resource: str | None = None
    scope: str | None = None
    subject_token_type: str = _TOKEN_TYPE_JWT
    client_id: str | None = None
    client_assertion: CredentialSource | None = None

    def form(self) -> dict[str, str]:
        return {
            "grant_type": GRANT_TYPE_TOKEN_EXCHANGE,
            "subject_token": self.subject_token.get().value,
            "subject_token_type": self.subject_token_type,
            "requested_token_type": TOKEN_TYPE_ACCESS_TOKEN,
            **_optional(audience=self.audience, resource=self.resource, scope=self.scope),
            **_client_authentication(self.client_id, self.client_assertion),
        }


@dataclass(frozen=True)
class ClientCredentialsGrant:
    """RFC 6749 §4.4, the client authenticated by ``private_key_jwt`` (RFC 7523 §2.2): ``client_assertion`` signs a
    fresh assertion per request (``iss`` = ``sub`` = ``client_id``, ``aud`` = the external AS)."""

    client_id: str
    client_assertion: CredentialSource
    scope: str | None = None
    resource: str | None = None

    def form(self) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            **_optional(scope=self.scope, resource=self.resource),
            **_client_authentication(self.client_id, self.client_assertion),
        }


class ExternalTokenSource:
    """Access tokens from the external authorization server at ``token_endpoint`` for ``grant``.

    - ``refresh_margin``: seconds before expiry at which a token is fetched again;
    - ``default_lifetime``: how long a token without ``expires_in`` is used;
    - ``allow_http``: plain http to a non-loopback host (tests and demos only; tokens travel, so https).

    Raises :class:`~txtoken.errors.TokenServiceError` subclasses by the AS's OAuth ``error`` code, or
    ``TokenServiceUnavailable`` when it cannot be reached; nothing raised contains a token.
    """

    def __init__(
        self,
        token_endpoint: str,
        grant: Grant,
        *,
        timeout: float = 5.0,
        refresh_margin: float = 30.0,
        default_lifetime: int = 60,
        allow_http: bool = False,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        url = httpx.URL(token_endpoint)
        if url.scheme != "https" and not (url.scheme == "http" and (allow_http or url.host in _LOOPBACK_HOSTS)):
            raise ConfigurationError("the token endpoint must be https (allow_http=True on a test or demo network)")
        self.token_endpoint = token_endpoint
        self.grant = grant
        self._default_lifetime = default_lifetime
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)
        self._clock = clock
        self._cache: CredentialCache[None] = CredentialCache(refresh_margin=refresh_margin, clock=clock)
        self._generation = 0
        self._latest: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token_endpoint={self.token_endpoint!r}, grant={type(self.grant).__name__})"

    def get(self) -> Credential:
        """The current access token (fetched when none is cached or it is about to expire)."""
        return self._cache.get(None, self._fetch, tag=self._generation)

    async def aget(self) -> Credential:
        """As :meth:`get`, without blocking the event loop (one fetch for all concurrent tasks)."""
        return await self._cache.aget(None, self._fetch, tag=self._generation)

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (the external API answered 401 to it), unless a newer one replaced it already: of many
        callers refused with the same token, one causes a new fetch."""
        with self._lock:
            if self._latest == token:
                self._latest = None
                self._generation += 1

    def close(self) -> None:
        """Close the HTTP client (when the source made it)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> ExternalTokenSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _fetch(self) -> Credential:
        form = self.grant.form()
        secrets = tuple(form[k] for k in ("assertion", "subject_token", "client_assertion") if k in form)
        try:
            response = self._client.post(self.token_endpoint, data=form, headers={"Accept": "application/json"})
        except httpx.TransportError as exc:
            raise TokenServiceUnavailable(f"the authorization server cannot be reached: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise oauth_error(response, secrets)
        return self._parse(response)

    def _parse(self, response: httpx.Response) -> Credential:
        try:
            body = response.json()
        except ValueError:
            raise TokenServiceError("the authorization server answered 200 without JSON") from None
        if not isinstance(body, dict):
            raise TokenServiceError("the authorization server answered 200 without a JSON object")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenServiceError("the response has no access_token")
        token_type = body.get("token_type")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise TokenServiceError("the response's token_type is not Bearer")
        issued_type = body.get("issued_token_type")
        if issued_type is not None and issued_type != TOKEN_TYPE_ACCESS_TOKEN:
            raise TokenServiceError("the response's issued_token_type is not an access token")
        expires_in = body.get("expires_in", self._default_lifetime)
        if type(expires_in) is not int or expires_in <= 0:
            raise TokenServiceError("the response's expires_in is not a positive integer")
        with self._lock:
            self._latest = token
        return Credential(token, self._clock() + expires_in)
