"""Requester authentication (§11.5): who is asking for a Txn-Token. The result becomes ``req_wl``.

Two methods, exactly one per request (RFC 6749 §2.3):

- an RFC 7523 client assertion (``client_assertion_type`` jwt-bearer) whose JWT is either the workload's platform
  credential from a configured issuer (Kubernetes, SPIFFE, GitHub Actions, GitLab CI), matched to a workload by the
  claims the policy lists, or a JWT the workload signed with its registered key pair (``iss`` = ``sub`` = its id,
  with a ``jti`` used only once). Either way ``aud`` must be the TTS's identifier (alone, if an array) and the lifetime
  is capped: minutes for a key-pair assertion, the platform's token lifetime for a platform credential;
- mTLS terminated by the trusted proxy, which forwards the client certificate (Envoy ``x-forwarded-client-cert``);
  the identity is the certificate's URI SAN. The header is honoured only from the trusted proxy's addresses.

A Txn-Token never authenticates a workload (§13.12).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from txtoken.claims import CLIENT_ASSERTION_TYPE_JWT_BEARER, TXN_TOKEN_TYP
from txtoken.errors import (
    InvalidClient,
    KeysUnavailable,
    ReplayStoreUnavailable,
    TokenRejected,
    TokenServiceUnavailable,
)
from txtoken.jws import parse_jws, typ_matches
from txtoken.keys import ALGORITHMS
from txtoken.replay import ReplayStore
from txtoken.service.config import TrustedProxyConfig
from txtoken.service.issuers import IssuerRegistry
from txtoken.service.jwtcheck import NO_TYP, JwtRules, claims_match, peek_claims, verify_jwt
from txtoken.service.policy import Policy, Workload

__all__ = ["ASSERTION_TYPS", "Requester", "RequesterAuthenticator", "parse_xfcc"]

#: ``typ`` values accepted on a client assertion (none, ``JWT``, or rfc7523bis ``client-authentication+jwt``).
ASSERTION_TYPS = frozenset({NO_TYP, "jwt", "client-authentication+jwt"})
_ALL_ALGORITHMS = frozenset(ALGORITHMS)
# An "oidc" issuer (a cloud provider's instance-metadata identity tokens) authenticates workloads only when its
# configuration gives it the client_assertion role explicitly.
_PLATFORM_KINDS = frozenset({"kubernetes", "spiffe", "github_actions", "gitlab_ci", "oidc"})


@dataclass(frozen=True, slots=True)
class Requester:
    """An authenticated requesting workload and how it authenticated (``key``, ``mtls`` or ``jwt:<issuer>``)."""

    workload: Workload
    method: str


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes (backslash escapes inside quotes)."""
    parts, current, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            current.append(ch)
            escaped = True
        elif ch == '"':
            current.append(ch)
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if quoted:
        raise ValueError("unterminated quote")
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        out, escaped = [], False
        for ch in inner:
            if escaped or ch != "\\":
                out.append(ch)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return value


def parse_xfcc(values: Sequence[str]) -> list[dict[str, list[str]]]:
    """Parse ``x-forwarded-client-cert`` header values into elements (``{"uri": [...], "hash": [...], ...}``)."""
    elements = []
    for value in values:
        for element in _split(value, ","):
            pairs: dict[str, list[str]] = {}
            for pair in _split(element.strip(), ";"):
                name, sep, raw = pair.strip().partition("=")
                if not sep or not name:
                    raise ValueError("not a key=value pair")
                pairs.setdefault(name.lower(), []).append(_unquote(raw))
            elements.append(pairs)
    return elements


class RequesterAuthenticator:
    """Authenticates the requesting workload of a token request."""

    def __init__(
        self,
        policy: Policy,
        issuers: IssuerRegistry,
        *,
        identifier: str,
        trusted_proxy: TrustedProxyConfig,
        leeway: int,
        key_assertion_max_lifetime: int,
        replay_store: ReplayStore,
    ) -> None:
        self._policy = policy
        self._issuers = issuers
        self._audience = frozenset({identifier})
        self._proxies = [ipaddress.ip_network(a, strict=False) for a in trusted_proxy.addresses]
        self._header = trusted_proxy.header
        self._leeway = leeway
        self._key_rules = JwtRules(
            ASSERTION_TYPS,
            self._audience,
            ("iss", "sub", "aud", "exp", "jti"),
            leeway,
            max_lifetime=key_assertion_max_lifetime,
            sole_audience=True,
        )
        self._replay = replay_store

    def _trusted_peer(self, peer: str | None) -> bool:
        if peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self._proxies)

    async def authenticate(
        self, form: Mapping[str, str], headers: Mapping[str, Sequence[str]], peer: str | None, now: float
    ) -> Requester:
        """The authenticated workload; raises :class:`InvalidClient` (or 503 if an issuer's keys are unavailable)."""
        if headers.get("authorization"):
            raise InvalidClient("HTTP authentication is not supported: use a client assertion or mTLS")
        forwarded = headers.get(self._header, [])
        if forwarded and not self._trusted_peer(peer):
            raise InvalidClient("a forwarded client certificate is only accepted from the trusted proxy")
        assertion = form.get("client_assertion")
        assertion_type = form.get("client_assertion_type")
        if forwarded and (assertion is not None or assertion_type is not None):
            raise InvalidClient("more than one client authentication method")
        if forwarded:
            requester = self._from_certificate(forwarded)
        elif assertion is not None or assertion_type is not None:
            if assertion_type != CLIENT_ASSERTION_TYPE_JWT_BEARER:
                raise InvalidClient("client_assertion_type must be jwt-bearer")
            if not assertion:
                raise InvalidClient("client_assertion is empty")
            requester = await self._from_assertion(assertion, now)
        else:
            raise InvalidClient("client authentication is required")
        client_id = form.get("client_id")
        if client_id is not None and client_id != requester.workload.id:
            raise InvalidClient("client_id does not name the authenticated workload")
        return requester

    def _from_certificate(self, values: Sequence[str]) -> Requester:
        try:
            elements = parse_xfcc(values)
        except ValueError:
            raise InvalidClient("the forwarded client certificate header is malformed") from None
        if len(elements) != 1:
            raise InvalidClient("the forwarded client certificate header must describe exactly one certificate")
        uris = elements[0].get("uri", [])
        if len(uris) != 1:
            raise InvalidClient("the client certificate must carry exactly one URI SAN")
        workload = self._policy.by_mtls_uri.get(uris[0])
        if workload is None:
            raise InvalidClient("no workload is registered for this client certificate")
        return Requester(workload, "mtls")

    async def _from_assertion(self, assertion: str, now: float) -> Requester:
        try:
            jws = parse_jws(assertion, algorithms=_ALL_ALGORITHMS, require_kid=False)
            if typ_matches(jws.header.typ, TXN_TOKEN_TYP):
                raise InvalidClient("a Txn-Token cannot authenticate a workload (§13.12)")
            unverified = peek_claims(jws)
            iss = unverified.get("iss")
            keyed = self._policy.keyed_workload(iss) if isinstance(iss, str) else None
            if keyed is not None and keyed.keys is not None:
                claims = await verify_jwt(
                    jws, keys=keyed.keys, algorithms=_ALL_ALGORITHMS, rules=self._key_rules, now=now
                )
                if claims["sub"] != keyed.id:
                    raise InvalidClient("a workload key assertion needs sub = iss = the workload id")
                await self._use_once(keyed.id, claims["jti"], claims["exp"])
                return Requester(keyed, "key")
            issuer = self._issuers.find(unverified, role="client_assertion", kinds=_PLATFORM_KINDS)
            if issuer is None:
                raise InvalidClient("the client assertion comes from no trusted issuer")
            claims = await issuer.verify(
                jws,
                audiences=self._audience,
                leeway=self._leeway,
                now=now,
                typs=ASSERTION_TYPS | issuer.rules.typs,
                as_assertion=True,
            )
        except TokenRejected as exc:
            raise InvalidClient(f"client_assertion: {exc.code}") from None
        except KeysUnavailable:
            raise TokenServiceUnavailable("the keys of the client assertion's issuer are unavailable") from None
        for issuer_name, rule, workload in self._policy.by_jwt:
            if issuer_name == issuer.name and claims_match(rule, claims):
                return Requester(workload, f"jwt:{issuer_name}")
        raise InvalidClient("no workload of the policy matches the client assertion")

    async def _use_once(self, workload_id: str, jti: str, exp: float) -> None:
        """A key-pair assertion's ``jti`` is accepted once within the assertion's lifetime (its ``exp``)."""
        digest = hashlib.sha256(f"{workload_id}\0{jti}".encode()).hexdigest()
        try:
            first = await self._replay.afirst_use(f"assertion:{digest}", exp)
        except ReplayStoreUnavailable:
            raise TokenServiceUnavailable("the client assertion replay store is unavailable") from None
        if not first:
            raise InvalidClient("client_assertion: its jti was already used")
