"""A client of the Txn-Token Service (sync and async, on httpx): exchange a subject token, request a replacement.

The client authenticates with the workload's credential as an RFC 7523 client assertion, retries with exponential
backoff on connection errors and 5xx answers only, and raises the core's
:class:`~txtoken.errors.TokenServiceError` subclasses carrying the TTS's OAuth error code. No token ever appears in
an error message.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from txtoken.claims import (
    CLIENT_ASSERTION_TYPE_JWT_BEARER,
    GRANT_TYPE_TOKEN_EXCHANGE,
    TOKEN_TYPE_TXN_TOKEN,
)
from txtoken.credentials.base import CredentialSource
from txtoken.errors import (
    ConfigurationError,
    TokenMalformed,
    TokenServiceError,
    TokenServiceUnavailable,
    oauth_error_class,
)
from txtoken.jws import b64url_decode

__all__ = ["AsyncTokenServiceClient", "TokenResponse", "TokenServiceClient", "oauth_error"]

_BACKOFF_BASE = 0.1
_BACKOFF_CAP = 2.0
_MAX_DESCRIPTION = 300

Credential = CredentialSource | Callable[[], str] | None


@dataclass(frozen=True)
class TokenResponse:
    """A successful Txn-Token response. ``scope`` is the issued scope (the requested one when the TTS omits it)."""

    access_token: str = field(repr=False)
    issued_token_type: str
    expires_in: int | None
    scope: str | None


def _token_claims(txn_token: str) -> dict[str, Any]:
    """The (unverified) claims of the caller's own current Txn-Token, to carry its audience and scope over."""
    parts = txn_token.split(".")
    try:
        if len(parts) != 3:
            raise TokenMalformed("not a compact JWS")
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, TokenMalformed):
        raise ConfigurationError("txn_token is not a Txn-Token") from None
    if not isinstance(claims, dict):
        raise ConfigurationError("txn_token is not a Txn-Token")
    return claims


def _context(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(dict(value), separators=(",", ":"))


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text[:_MAX_DESCRIPTION]


def oauth_error(response: httpx.Response, secrets: tuple[str, ...]) -> TokenServiceError:
    """The error a non-200 answer of a token endpoint stands for, by its OAuth ``error`` code (RFC 6749 §5.2);
    ``secrets`` (the tokens sent) are redacted from the description."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        description = body.get("error_description")
        text = _redact(description if isinstance(description, str) else body["error"], secrets)
        return oauth_error_class(body["error"])(text)
    if response.status_code >= 500:
        return TokenServiceUnavailable(f"the token service answered {response.status_code}")
    return TokenServiceError(f"the token service answered {response.status_code} without an OAuth error")


def _parse_success(response: httpx.Response, requested_scope: str) -> TokenResponse:
    try:
        body = response.json()
    except ValueError:
        raise TokenServiceError("the token service answered 200 without JSON") from None
    if not isinstance(body, dict):
        raise TokenServiceError("the token service answered 200 without a JSON object")
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise TokenServiceError("the response has no access_token")
    if body.get("issued_token_type") != TOKEN_TYPE_TXN_TOKEN:
        raise TokenServiceError("the response's issued_token_type is not txn_token")
    if not isinstance(body.get("token_type"), str) or body["token_type"].upper() != "N_A":
        raise TokenServiceError("the response's token_type is not N_A")
    if "refresh_token" in body:
        raise TokenServiceError("the response carries a refresh token, which a Txn-Token response must not (§13.3)")
    expires_in = body.get("expires_in")
    if expires_in is not None and (type(expires_in) is not int or expires_in <= 0):
        raise TokenServiceError("the response's expires_in is not a positive integer")
    scope = body.get("scope", requested_scope)
    if not isinstance(scope, str):
        raise TokenServiceError("the response's scope is not a string")
    return TokenResponse(token, TOKEN_TYPE_TXN_TOKEN, expires_in, scope)


def _unreachable(exc: httpx.TransportError) -> TokenServiceUnavailable:
    return TokenServiceUnavailable(f"the token service cannot be reached: {type(exc).__name__}")


def _backoff(attempt: int) -> float:
    delay: float = min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)
    return delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class _Base:
    def __init__(
        self,
        token_endpoint: str,
        *,
        credential: Credential,
        trust_domain: str | None,
        retries: int,
        allow_http: bool,
    ) -> None:
        if retries < 0:
            raise ConfigurationError("retries must be 0 or more")
        url = httpx.URL(token_endpoint)
        if url.scheme != "https" and not (url.scheme == "http" and (allow_http or url.host in _LOOPBACK_HOSTS)):
            # §11.5: a workload authenticates the TTS before it discloses a subject token to it: https.
            raise ConfigurationError("the token endpoint must be https (allow_http=True on a test or demo network)")
        self.token_endpoint = token_endpoint
        self.trust_domain = trust_domain
        self._credential = credential
        self._retries = retries

    def _exchange_form(
        self,
        *,
        subject_token: str,
        subject_token_type: str,
        scope: str,
        audience: str | None,
        request_context: Mapping[str, Any] | None,
        request_details: Mapping[str, Any] | None,
    ) -> dict[str, str]:
        target = audience or self.trust_domain
        if not target:
            raise ConfigurationError("no audience: pass audience= or give the client a trust_domain")
        form = {
            "grant_type": GRANT_TYPE_TOKEN_EXCHANGE,
            "requested_token_type": TOKEN_TYPE_TXN_TOKEN,
            "audience": target,
            "scope": scope,
            "subject_token": subject_token,
            "subject_token_type": subject_token_type,
        }
        for name, value in (("request_context", request_context), ("request_details", request_details)):
            encoded = _context(value)
            if encoded is not None:
                form[name] = encoded
        return form

    def _replace_form(
        self,
        txn_token: str,
        scope: str | None,
        request_context: Mapping[str, Any] | None,
        request_details: Mapping[str, Any] | None,
    ) -> dict[str, str]:
        claims = _token_claims(txn_token)
        current_scope, aud = claims.get("scope"), claims.get("aud")
        if not isinstance(aud, str) or not isinstance(current_scope, str):
            raise ConfigurationError("txn_token lacks aud or scope")
        return self._exchange_form(
            subject_token=txn_token,
            subject_token_type=TOKEN_TYPE_TXN_TOKEN,
            scope=scope or current_scope,
            audience=aud,
            request_context=request_context,
            request_details=request_details,
        )

    @staticmethod
    def _authenticate(form: dict[str, str], assertion: str | None) -> None:
        if assertion is not None:
            form["client_assertion_type"] = CLIENT_ASSERTION_TYPE_JWT_BEARER
            form["client_assertion"] = assertion

    @staticmethod
    def _secrets(form: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(form[k] for k in ("subject_token", "client_assertion") if k in form)


class TokenServiceClient(_Base):
    """A synchronous TTS client (httpx.Client); use it as a context manager or call :meth:`close`."""

    def __init__(
        self,
        token_endpoint: str,
        *,
        credential: CredentialSource | Callable[[], str] | None = None,
        trust_domain: str | None = None,
        timeout: float = 5.0,
        retries: int = 2,
        client: httpx.Client | None = None,
        allow_http: bool = False,
    ) -> None:
        super().__init__(
            token_endpoint, credential=credential, trust_domain=trust_domain, retries=retries, allow_http=allow_http
        )
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)

    def _assertion(self) -> str | None:
        source = self._credential
        if source is None:
            return None
        if isinstance(source, CredentialSource):
            return source.get().value
        return source()

    def exchange(
        self,
        *,
        subject_token: str,
        subject_token_type: str,
        scope: str,
        audience: str | None = None,
        request_context: Mapping[str, Any] | None = None,
        request_details: Mapping[str, Any] | None = None,
    ) -> TokenResponse:
        """Exchange ``subject_token`` for a Txn-Token for ``audience`` (default: the client's trust domain)."""
        form = self._exchange_form(
            subject_token=subject_token,
            subject_token_type=subject_token_type,
            scope=scope,
            audience=audience,
            request_context=request_context,
            request_details=request_details,
        )
        return self._post(form)

    def replace(
        self,
        txn_token: str,
        *,
        scope: str | None = None,
        request_details: Mapping[str, Any] | None = None,
        request_context: Mapping[str, Any] | None = None,
    ) -> TokenResponse:
        """A replacement for ``txn_token`` (§13.15); ``scope`` defaults to the current token's (it can only narrow)."""
        return self._post(self._replace_form(txn_token, scope, request_context, request_details))

    def _post(self, form: dict[str, str]) -> TokenResponse:
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            self._authenticate(form, self._assertion())  # per attempt: a key-pair assertion's jti is used once
            secrets = self._secrets(form)
            try:
                response = self._client.post(self.token_endpoint, data=form, headers={"Accept": "application/json"})
            except httpx.TransportError as exc:
                if last:
                    raise _unreachable(exc) from None
                time.sleep(_backoff(attempt))
                continue
            if response.status_code >= 500 and not last:
                time.sleep(_backoff(attempt))
                continue
            if response.status_code != 200:
                raise oauth_error(response, secrets)
            return _parse_success(response, form["scope"])
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> TokenServiceClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncTokenServiceClient(_Base):
    """An asynchronous TTS client (httpx.AsyncClient); use it as an async context manager or call :meth:`aclose`."""

    def __init__(
        self,
        token_endpoint: str,
        *,
        credential: CredentialSource | Callable[[], str] | None = None,
        trust_domain: str | None = None,
        timeout: float = 5.0,
        retries: int = 2,
        client: httpx.AsyncClient | None = None,
        allow_http: bool = False,
    ) -> None:
        super().__init__(
            token_endpoint, credential=credential, trust_domain=trust_domain, retries=retries, allow_http=allow_http
        )
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def _assertion(self) -> str | None:
        source = self._credential
        if source is None:
            return None
        if isinstance(source, CredentialSource):
            return (await source.aget()).value
        return source()

    async def exchange(
        self,
        *,
        subject_token: str,
        subject_token_type: str,
        scope: str,
        audience: str | None = None,
        request_context: Mapping[str, Any] | None = None,
        request_details: Mapping[str, Any] | None = None,
    ) -> TokenResponse:
        """Exchange ``subject_token`` for a Txn-Token for ``audience`` (default: the client's trust domain)."""
        form = self._exchange_form(
            subject_token=subject_token,
            subject_token_type=subject_token_type,
            scope=scope,
            audience=audience,
            request_context=request_context,
            request_details=request_details,
        )
        return await self._post(form)

    async def replace(
        self,
        txn_token: str,
        *,
        scope: str | None = None,
        request_details: Mapping[str, Any] | None = None,
        request_context: Mapping[str, Any] | None = None,
    ) -> TokenResponse:
        """A replacement for ``txn_token`` (§13.15); ``scope`` defaults to the current token's (it can only narrow)."""
        return await self._post(self._replace_form(txn_token, scope, request_context, request_details))

    async def _post(self, form: dict[str, str]) -> TokenResponse:
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            self._authenticate(form, await self._assertion())  # per attempt: a key-pair assertion's jti is used once
            secrets = self._secrets(form)
            try:
                response = await self._client.post(
                    self.token_endpoint, data=form, headers={"Accept": "application/json"}
                )
            except httpx.TransportError as exc:
                if last:
                    raise _unreachable(exc) from None
                await asyncio.sleep(_backoff(attempt))
                continue
            if response.status_code >= 500 and not last:
                await asyncio.sleep(_backoff(attempt))
                continue
            if response.status_code != 200:
                raise oauth_error(response, secrets)
            return _parse_success(response, form["scope"])
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncTokenServiceClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
