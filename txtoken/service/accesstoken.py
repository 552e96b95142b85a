"""Validation of external OAuth access tokens, shared by the TTS (``access_token`` subject tokens) and the inbound
gateway (:mod:`txtoken.gateway`): one code path for both.

A JWT access token (RFC 9068) must come from a configured issuer of kind ``oauth`` and pass that issuer's keys,
``typ``, audience, expiry and claim rules; an opaque token (anything that is not a compact JWS) goes to the
configured RFC 7662 introspection endpoint and must come back ``active``, unexpired, from that issuer and for one
of its audiences.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import httpx
from pydantic import ValidationError

from txtoken.errors import ConfigurationError, InvalidRequest, TokenServiceUnavailable
from txtoken.jws import parse_jws
from txtoken.keys import ALGORITHMS
from txtoken.service.config import IssuerConfig
from txtoken.service.issuers import IssuerRegistry
from txtoken.service.jwtcheck import peek_claims
from txtoken.service.policy import token_scopes

__all__ = ["AccessToken", "AccessTokenValidator", "issuer_configs"]

_ALL_ALGORITHMS = frozenset(ALGORITHMS)
_OAUTH = frozenset({"oauth"})


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A valid access token: its subject (with the issuer's ``subject_prefix``), the scope it grants (None when it
    cannot be determined, §13.14), the name of the configured issuer, its verified claims (or the introspection
    answer), and when it expires (None when it does not say)."""

    sub: str
    scopes: frozenset[str] | None
    issuer: str
    claims: Mapping[str, Any] = field(repr=False)
    expires_at: float | None = None


def issuer_configs(data: Mapping[str, Mapping[str, Any]]) -> dict[str, IssuerConfig]:
    """Issuer tables as in the TTS's ``[issuers.NAME]`` configuration, validated; ``ConfigurationError`` names the
    bad field."""
    configs: dict[str, IssuerConfig] = {}
    for name, table in data.items():
        try:
            configs[name] = IssuerConfig.model_validate(table)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            raise ConfigurationError(f"issuers.{name}.{where}: {problem['msg']}") from None
    return configs


class _Introspection:
    """One RFC 7662 introspection endpoint, called with the configured client credentials."""

    def __init__(self, name: str, config: IssuerConfig) -> None:
        self.name = name
        self.config = config
        self._client: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _ask(self, token: str) -> Mapping[str, Any]:
        config = self.config
        auth = None
        if config.client_id is not None:
            secret = config.client_secret.get_secret_value() if config.client_secret else ""
            auth = httpx.BasicAuth(config.client_id, secret)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=config.timeout, follow_redirects=False)
        try:
            response = await self._client.post(
                str(config.introspection_endpoint),
                data={"token": token, "token_type_hint": "access_token"},
                headers={"Accept": "application/json"},
                auth=auth or httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise TokenServiceUnavailable(f"introspection failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise TokenServiceUnavailable(f"introspection answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise TokenServiceUnavailable("introspection answered no JSON") from None
        if not isinstance(body, dict):
            raise TokenServiceUnavailable("introspection answered no JSON object")
        return body

    async def validate(self, token: str, now: float) -> AccessToken:
        config = self.config
        answer = await self._ask(token)
        if answer.get("active") is not True:
            raise InvalidRequest("subject_token is not active")
        exp = answer.get("exp")
        if exp is not None and (not isinstance(exp, int | float) or isinstance(exp, bool) or now >= exp):
            raise InvalidRequest("subject_token: token_expired")
        if answer.get("iss", config.issuer) != config.issuer:
            raise InvalidRequest("subject_token: issued by another issuer")
        if config.audiences:
            aud = answer.get("aud")
            values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            if not set(config.audiences).intersection(values):
                raise InvalidRequest("subject_token: aud_invalid")
        sub = answer.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidRequest("subject_token: introspection gave no sub")
        scope = answer.get("scope")
        if scope is not None and not isinstance(scope, str):
            raise InvalidRequest("subject_token: introspection gave a malformed scope")
        scopes = token_scopes(scope) if scope is not None else None
        if scopes is None and config.scopes is not None:
            scopes = frozenset(config.scopes)
        return AccessToken(config.subject_prefix + sub, scopes, self.name, MappingProxyType(dict(answer)), exp)


class AccessTokenValidator:
    """Validates external access tokens against the configured issuers (kind ``oauth`` for JWTs, kind
    ``introspection`` for opaque tokens).

    - ``issuers``: :class:`~txtoken.service.config.IssuerConfig` by name (see :func:`issuer_configs`), or an
      :class:`~txtoken.service.issuers.IssuerRegistry` already built from them (the TTS shares its own);
    - ``default_audience``: the audience a JWT must carry when its issuer lists no ``audiences``;
    - ``leeway``: seconds of clock skew tolerated for ``nbf`` and ``iat`` (never for ``exp``).

    Raises a :class:`~txtoken.errors.TokenRejected` subclass or :class:`~txtoken.errors.InvalidRequest` for an
    unacceptable token, ``KeysUnavailable`` or ``TokenServiceUnavailable`` when it cannot be checked now.
    """

    def __init__(
        self,
        issuers: Mapping[str, IssuerConfig],
        *,
        default_audience: str,
        leeway: int = 30,
        registry: IssuerRegistry | None = None,
    ) -> None:
        self._registry = registry or IssuerRegistry(issuers)
        self._introspection = [
            _Introspection(name, config) for name, config in issuers.items() if config.kind == "introspection"
        ]
        if registry is None and not any(c.kind in ("oauth", "introspection") for c in issuers.values()):
            raise ConfigurationError("no issuer of kind 'oauth' or 'introspection' is configured")
        self._default_audience = default_audience
        self._leeway = leeway

    async def validate(self, token: str, *, now: float | None = None) -> AccessToken:
        """The valid access token ``token`` stands for."""
        at = time.time() if now is None else now
        if token.count(".") != 2:
            if not self._introspection:
                raise InvalidRequest("opaque access tokens are not accepted: no introspection endpoint is configured")
            return await self._introspection[0].validate(token, at)
        jws = parse_jws(token, algorithms=_ALL_ALGORITHMS, require_kid=False)
        issuer = self._registry.find(peek_claims(jws), role="subject", kinds=_OAUTH)
        if issuer is None:
            raise InvalidRequest("subject_token: not issued by a trusted issuer of this token type")
        audiences = frozenset(issuer.config.audiences or [self._default_audience])
        claims = await issuer.verify(jws, audiences=audiences, leeway=self._leeway, now=at)
        return AccessToken(
            issuer.config.subject_prefix + claims["sub"],
            issuer.rules.scopes(claims, issuer.config),
            issuer.name,
            MappingProxyType(claims),
            claims["exp"],
        )

    async def aclose(self) -> None:
        """Close the introspection clients."""
        for introspection in self._introspection:
            await introspection.aclose()
