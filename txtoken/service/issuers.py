"""The issuers the TTS trusts (identity providers, platforms) and the claim rules of each kind of token they issue.

A kind knows its token's shape: the ``typ`` values, required claims, extra checks, and where the scope comes from.
Kubernetes service-account tokens, SPIFFE JWT-SVIDs, GitHub Actions and GitLab CI OIDC tokens can serve as client
assertions (who is calling) and as subject tokens (a workload-initiated transaction); OAuth JWT access tokens (RFC
9068) and OpenID Connect ID tokens only as subject tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from txtoken.errors import ClaimInvalid, ConfigurationError
from txtoken.jws import CompactJws
from txtoken.keys import load_jwks
from txtoken.keysource import JwksFileKeySource, KeySource, RemoteJwksKeySource, StaticKeySource
from txtoken.service.config import IssuerConfig, IssuerKind
from txtoken.service.jwtcheck import NO_TYP, JwtRules, VerifiedJwtCache, claims_match, verify_jwt
from txtoken.service.policy import token_scopes

__all__ = ["KIND_RULES", "IssuerRegistry", "KindRules", "TrustedIssuer"]

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_PLAIN_JWT = frozenset({NO_TYP, "jwt"})
_MAX_JWT_RULES = 16


class KindRules:
    """The claim rules of one kind of issuer's tokens."""

    typs: ClassVar[frozenset[str]] = _PLAIN_JWT
    required: ClassVar[tuple[str, ...]] = ("iss", "sub", "aud", "exp")
    #: The default cap on the lifetime of such a token used as a client assertion: the platform's own lifetime.
    assertion_max_lifetime: ClassVar[int] = 3600

    def check(self, claims: Mapping[str, Any], issuer: IssuerConfig) -> None:
        """Kind-specific checks beyond the required claims; raises :class:`ClaimInvalid`."""

    def scopes(self, claims: Mapping[str, Any], issuer: IssuerConfig) -> frozenset[str] | None:
        """The scope the token grants, or the issuer's configured bound; None when neither is known (§13.14)."""
        return None if issuer.scopes is None else frozenset(issuer.scopes)


class OAuthAccessTokenRules(KindRules):
    """RFC 9068 JWT access tokens: ``typ`` ``at+jwt``, ``client_id``, ``iat``, ``jti``; scope from ``scope``."""

    typs = frozenset({"at+jwt"})
    required = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")

    def scopes(self, claims: Mapping[str, Any], issuer: IssuerConfig) -> frozenset[str] | None:
        scope = claims.get("scope")
        if scope is None:
            return super().scopes(claims, issuer)
        if not isinstance(scope, str):
            raise ClaimInvalid("scope: not a string")
        return token_scopes(scope)


class IdTokenRules(KindRules):
    """OpenID Connect ID tokens (Core §2): ``iss``, ``sub``, ``aud`` (the client), ``exp``, ``iat``."""

    required = ("iss", "sub", "aud", "exp", "iat")


class KubernetesRules(KindRules):
    """Kubernetes service-account tokens: ``sub`` is ``system:serviceaccount:<namespace>:<name>`` and agrees with
    the ``kubernetes.io`` claim. A projected token lives for its volume's ``expirationSeconds`` (1 h by default)."""

    assertion_max_lifetime = 86400

    def check(self, claims: Mapping[str, Any], issuer: IssuerConfig) -> None:
        k8s = claims.get("kubernetes.io")
        if not isinstance(k8s, dict):
            raise ClaimInvalid("kubernetes.io: missing")
        namespace = k8s.get("namespace")
        account = k8s.get("serviceaccount")
        name = account.get("name") if isinstance(account, dict) else None
        if not isinstance(namespace, str) or not isinstance(name, str):
            raise ClaimInvalid("kubernetes.io: namespace or serviceaccount.name missing")
        if claims["sub"] != f"system:serviceaccount:{namespace}:{name}":
            raise ClaimInvalid("sub does not match kubernetes.io")


class SpiffeRules(KindRules):
    """SPIFFE JWT-SVIDs: ``sub`` is a SPIFFE ID in the configured trust domain; ``iss`` is optional."""

    required = ("sub", "aud", "exp")

    def check(self, claims: Mapping[str, Any], issuer: IssuerConfig) -> None:
        if not claims["sub"].startswith(f"spiffe://{issuer.spiffe_trust_domain}/"):
            raise ClaimInvalid("sub is not a SPIFFE ID of the configured trust domain")
        if "iss" in claims and claims["iss"] != issuer.issuer:
            raise ClaimInvalid("iss is not the configured issuer")


class GitHubActionsRules(KindRules):
    """GitHub Actions OIDC tokens: ``repository`` and ``ref`` present, ``sub`` of the form ``repo:…``."""

    required = ("iss", "sub", "aud", "exp", "repository", "ref")

    def check(self, claims: Mapping[str, Any], issuer: IssuerConfig) -> None:
        if not claims["sub"].startswith(f"repo:{claims['repository']}:"):
            raise ClaimInvalid("sub does not name the repository")


class GitLabCiRules(KindRules):
    """GitLab CI ID tokens: ``project_path``, ``namespace_path`` and ``ref`` present, ``sub`` of the form
    ``project_path:…``."""

    required = ("iss", "sub", "aud", "exp", "project_path", "namespace_path", "ref")
    assertion_max_lifetime = 86400  # an ID token lives as long as its job may run

    def check(self, claims: Mapping[str, Any], issuer: IssuerConfig) -> None:
        if not claims["sub"].startswith(f"project_path:{claims['project_path']}:"):
            raise ClaimInvalid("sub does not name the project")


KIND_RULES: dict[IssuerKind, KindRules] = {
    "oauth": OAuthAccessTokenRules(),
    "oidc": IdTokenRules(),
    "kubernetes": KubernetesRules(),
    "spiffe": SpiffeRules(),
    "github_actions": GitHubActionsRules(),
    "gitlab_ci": GitLabCiRules(),
}


def _key_source(config: IssuerConfig) -> KeySource:
    if config.jwks_uri is not None:
        host = httpx.URL(config.jwks_uri).host
        return RemoteJwksKeySource(config.jwks_uri, allow_http=host in _LOOPBACK_HOSTS, timeout=config.timeout)
    if config.jwks_file is not None:
        return JwksFileKeySource(config.jwks_file)
    if config.jwks is not None:
        return StaticKeySource(load_jwks(config.jwks))
    raise ConfigurationError("issuer has no keys")


@dataclass(frozen=True, slots=True)
class TrustedIssuer:
    """A configured issuer of signed JWTs, with its keys and the rules of its kind.

    ``cache``: tokens of this issuer verified before (subject tokens, platform credentials as client assertions),
    until their ``exp``; a hit skips the signature check, the claim checks below run every time.
    """

    name: str
    config: IssuerConfig
    keys: KeySource
    rules: KindRules
    cache: VerifiedJwtCache | None = None
    algorithms: frozenset[str] = field(init=False)
    # The JwtRules of each way this issuer's tokens are checked: a handful, from the configuration.
    _jwt_rules: dict[tuple[frozenset[str], frozenset[str], int, bool], JwtRules] = field(
        init=False, default_factory=dict, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithms", frozenset(self.config.algorithms))

    @property
    def assertion_max_lifetime(self) -> int:
        """The longest lifetime of this issuer's tokens as client assertions (configured, else its kind's)."""
        configured = self.config.assertion_max_lifetime
        return configured if configured is not None else self.rules.assertion_max_lifetime

    async def verify(
        self,
        jws: CompactJws,
        *,
        audiences: frozenset[str],
        leeway: int,
        now: float,
        typs: frozenset[str] | None = None,
        as_assertion: bool = False,
    ) -> dict[str, Any]:
        """Verify a token of this issuer: signature, ``typ``, times, audience, kind rules, allowed claims; a client
        assertion (``as_assertion``) also within :attr:`assertion_max_lifetime` and for one audience only."""
        key = (typs or self.rules.typs, audiences, leeway, as_assertion)
        rules = self._jwt_rules.get(key)
        if rules is None:
            rules = JwtRules(
                key[0],
                audiences,
                self.rules.required,
                leeway,
                max_lifetime=self.assertion_max_lifetime if as_assertion else None,
                sole_audience=as_assertion,
            )
            if len(self._jwt_rules) < _MAX_JWT_RULES:
                self._jwt_rules[key] = rules
        claims = await verify_jwt(
            jws, keys=self.keys, algorithms=self.algorithms, rules=rules, now=now, cache=self.cache
        )
        if "iss" in claims and claims["iss"] != self.config.issuer:
            raise ClaimInvalid("iss is not the configured issuer")
        self.rules.check(claims, self.config)
        if not claims_match(self.config.allowed_claims, claims):
            raise ClaimInvalid("claims are outside the issuer's allow-list")
        return claims


class IssuerRegistry:
    """The trusted JWT issuers, found by ``iss`` (SPIFFE JWT-SVIDs without ``iss``: by their trust domain).

    ``cache_size`` bounds each issuer's cache of verified tokens (see :class:`VerifiedJwtCache`); 0 turns it off.
    """

    def __init__(self, issuers: Mapping[str, IssuerConfig], *, cache_size: int = 10_000) -> None:
        self._issuers = {
            name: TrustedIssuer(
                name,
                config,
                _key_source(config),
                KIND_RULES[config.kind],
                VerifiedJwtCache(cache_size) if cache_size else None,
            )
            for name, config in issuers.items()
            if config.kind != "introspection"
        }

    def get(self, name: str) -> TrustedIssuer:
        return self._issuers[name]

    def find(self, claims: Mapping[str, Any], *, role: str, kinds: frozenset[str]) -> TrustedIssuer | None:
        """The issuer with ``role`` and a kind in ``kinds`` that issued a token with these (unverified) claims."""
        iss = claims.get("iss")
        sub = claims.get("sub")
        for issuer in self._issuers.values():
            config = issuer.config
            if role not in config.effective_roles or config.kind not in kinds:
                continue
            if iss is not None and iss == config.issuer:
                return issuer
            if (
                iss is None
                and config.kind == "spiffe"
                and isinstance(sub, str)
                and sub.startswith(f"spiffe://{config.spiffe_trust_domain}/")
            ):
                return issuer
        return None
