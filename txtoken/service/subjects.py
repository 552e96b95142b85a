"""Subject-token profiles: one small class per kind of ``subject_token``, all behind :class:`SubjectProfile`.

A profile validates the token (signature, issuer, audience, expiry, required claims) and says who the subject is
(``sub``, mapped so that it is unique within the trust domain) and which scope the token carries, or None when that
cannot be determined (§13.14: the request is then refused unless the policy gives a bound).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from txtoken.claims import (
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_TOKEN,
    TOKEN_TYPE_JWT,
    TOKEN_TYPE_REFRESH_TOKEN,
    TOKEN_TYPE_SELF_SIGNED,
    TOKEN_TYPE_TXN_TOKEN,
    TOKEN_TYPE_UNSIGNED_JSON,
)
from txtoken.errors import InvalidRequest, TokenExpired
from txtoken.jws import parse_jws
from txtoken.keys import ALGORITHMS
from txtoken.keysource import KeySource
from txtoken.service.accesstoken import AccessTokenValidator
from txtoken.service.config import ServiceSettings
from txtoken.service.issuers import IssuerRegistry
from txtoken.service.jwtcheck import NO_TYP, JwtRules, peek_claims, verify_jwt
from txtoken.service.policy import Workload
from txtoken.verify import TxnTokenVerifier, VerifiedTxnToken

__all__ = [
    "IdTokenProfile",
    "OAuthAccessTokenProfile",
    "SelfSignedProfile",
    "Subject",
    "SubjectProfile",
    "SubjectProfiles",
    "SubjectRequest",
    "TxnTokenProfile",
    "UnsignedJsonProfile",
    "WorkloadJwtProfile",
]

_ALL_ALGORITHMS = frozenset(ALGORITHMS)
_MAX_UNSIGNED_JSON = 4096


@dataclass(frozen=True, slots=True)
class Subject:
    """Who the transaction is about, the scope the subject token carries, when the subject token expires (None when
    it says not), and the Txn-Token being replaced."""

    sub: str
    scopes: frozenset[str] | None
    replaced: VerifiedTxnToken | None = None
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class SubjectRequest:
    """A subject token to validate, with the request it came in."""

    token: str = field(repr=False)
    workload: Workload
    audience: str
    now: float


class SubjectProfile(Protocol):
    """Validates one kind of subject token."""

    async def validate(self, request: SubjectRequest) -> Subject:
        """The subject; raises a ``TokenRejected`` subclass or ``InvalidRequest`` if the token is not acceptable."""
        ...


class _IssuedJwtProfile:
    """Signed JWTs from a configured issuer of one of ``kinds``, checked with that issuer's keys and rules."""

    kinds: frozenset[str] = frozenset()

    def __init__(self, issuers: IssuerRegistry, *, identifier: str, leeway: int) -> None:
        self._issuers = issuers
        self._identifier = identifier
        self._leeway = leeway

    async def validate(self, request: SubjectRequest) -> Subject:
        jws = parse_jws(request.token, algorithms=_ALL_ALGORITHMS, require_kid=False)
        issuer = self._issuers.find(peek_claims(jws), role="subject", kinds=self.kinds)
        if issuer is None:
            raise InvalidRequest("subject_token: not issued by a trusted issuer of this token type")
        audiences = frozenset(issuer.config.audiences or [self._identifier])
        claims = await issuer.verify(jws, audiences=audiences, leeway=self._leeway, now=request.now)
        return Subject(
            issuer.config.subject_prefix + claims["sub"],
            issuer.rules.scopes(claims, issuer.config),
            expires_at=claims["exp"],
        )


class OAuthAccessTokenProfile:
    """Access tokens: RFC 9068 JWTs from configured OAuth authorization servers, opaque ones by RFC 7662
    introspection; validated by the :class:`~txtoken.service.accesstoken.AccessTokenValidator` the gateway uses too."""

    def __init__(self, validator: AccessTokenValidator) -> None:
        self.validator = validator

    async def validate(self, request: SubjectRequest) -> Subject:
        token = await self.validator.validate(request.token, now=request.now)
        return Subject(token.sub, token.scopes, expires_at=token.expires_at)


class IdTokenProfile(_IssuedJwtProfile):
    """OpenID Connect ID tokens from configured OpenID providers."""

    kinds = frozenset({"oidc"})


class WorkloadJwtProfile(_IssuedJwtProfile):
    """Workload JWTs (Kubernetes service-account tokens, SPIFFE JWT-SVIDs, CI OIDC tokens) as the subject of a
    workload-initiated transaction; the issuer's ``allowed_claims`` is the allow-list."""

    kinds = frozenset({"kubernetes", "spiffe", "github_actions", "gitlab_ci"})


class SelfSignedProfile:
    """Self-signed JWTs (§11.2.1): signed by the requesting workload's registered key, ``iss`` = that workload,
    ``aud`` = the TTS's own identifier (never the trust domain), recent ``iat``, unexpired ``exp``."""

    def __init__(self, *, identifier: str, leeway: int, max_age: int) -> None:
        self._rules = JwtRules(
            frozenset({NO_TYP, "jwt"}), frozenset({identifier}), ("iss", "sub", "aud", "iat", "exp"), leeway, max_age
        )

    async def validate(self, request: SubjectRequest) -> Subject:
        workload = request.workload
        if workload.keys is None:
            raise InvalidRequest("subject_token: self-signed tokens need a key registered for the requesting workload")
        jws = parse_jws(request.token, algorithms=_ALL_ALGORITHMS, require_kid=False)
        if peek_claims(jws).get("iss") != workload.id:
            raise InvalidRequest("subject_token: iss of a self-signed token must be the requesting workload")
        claims = await verify_jwt(
            jws, keys=workload.keys, algorithms=_ALL_ALGORITHMS, rules=self._rules, now=request.now
        )
        return Subject(
            workload.asserted_subject_prefix + claims["sub"], workload.asserted_subject_scopes, expires_at=claims["exp"]
        )


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member")
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def strict_json_object(text: str, what: str) -> dict[str, Any]:
    """A JSON object without duplicate members or ``NaN``/``Infinity``; :class:`InvalidRequest` otherwise."""
    try:
        value = json.loads(text, object_pairs_hook=_unique_members, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise InvalidRequest(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} must be a JSON object")
    return value


class UnsignedJsonProfile:
    """Unsigned JSON (§11.2.2): a JSON object with ``sub``; trusted only as far as the requester is (the policy must
    list this type for the workload)."""

    async def validate(self, request: SubjectRequest) -> Subject:
        if len(request.token) > _MAX_UNSIGNED_JSON:
            raise InvalidRequest("subject_token is too large")
        value = strict_json_object(request.token, "subject_token")
        sub = value.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidRequest("subject_token: sub missing")
        exp = value.get("exp")
        if exp is not None and (not isinstance(exp, int | float) or isinstance(exp, bool) or request.now >= exp):
            raise InvalidRequest("subject_token: token_expired")
        workload = request.workload
        return Subject(workload.asserted_subject_prefix + sub, workload.asserted_subject_scopes, expires_at=exp)


class TxnTokenProfile:
    """A Txn-Token of this TTS, to be replaced (§13.15): verified like any hop would, for the requested audience
    (so ``aud`` cannot change), and refused once expired, without leeway."""

    def __init__(self, keys: KeySource, settings: ServiceSettings) -> None:
        self._verifiers = {
            domain: TxnTokenVerifier(
                keys,
                trust_domain=domain,
                issuer=settings.identifier,
                leeway=settings.leeway,
                max_lifetime=settings.max_lifetime,
                max_token_size=settings.max_token_size,
                cache_size=0,
            )
            for domain in settings.trust_domains
        }

    async def validate(self, request: SubjectRequest) -> Subject:
        verified = await self._verifiers[request.audience].averify(request.token)
        if request.now >= verified.expires_at:
            raise TokenExpired("token has expired")
        return Subject(verified.sub, verified.scopes, replaced=verified, expires_at=verified.expires_at)


class SubjectProfiles:
    """Chooses the profile for a ``subject_token_type`` (and, for access tokens, the token's form)."""

    def __init__(self, settings: ServiceSettings, issuers: IssuerRegistry, own_keys: KeySource) -> None:
        identifier, leeway = settings.identifier, settings.leeway
        self.access_tokens = AccessTokenValidator(
            settings.issuers, default_audience=identifier, leeway=leeway, registry=issuers
        )
        self._profiles: dict[str, SubjectProfile] = {
            TOKEN_TYPE_ACCESS_TOKEN: OAuthAccessTokenProfile(self.access_tokens),
            TOKEN_TYPE_ID_TOKEN: IdTokenProfile(issuers, identifier=identifier, leeway=leeway),
            TOKEN_TYPE_JWT: WorkloadJwtProfile(issuers, identifier=identifier, leeway=leeway),
            TOKEN_TYPE_SELF_SIGNED: SelfSignedProfile(
                identifier=identifier, leeway=leeway, max_age=settings.self_signed_max_age
            ),
            TOKEN_TYPE_UNSIGNED_JSON: UnsignedJsonProfile(),
            TOKEN_TYPE_TXN_TOKEN: TxnTokenProfile(own_keys, settings),
        }

    def select(self, token_type: str, token: str) -> SubjectProfile:
        if token_type == TOKEN_TYPE_REFRESH_TOKEN:
            raise InvalidRequest("a refresh token cannot be a subject token (§13.3)")
        profile = self._profiles.get(token_type)
        if profile is None:
            raise InvalidRequest("unsupported subject_token_type")
        return profile

    async def aclose(self) -> None:
        await self.access_tokens.aclose()
