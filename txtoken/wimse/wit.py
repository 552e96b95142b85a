"""Workload Identity Tokens (draft-ietf-wimse-workload-creds §5.1): issuing and verifying.

A WIT (``typ`` ``wit+jwt``) binds a Workload Identifier (``sub``) to the workload's public key (``cnf.jwk``), signed
by the trust domain's identity server. A verifier takes keys only from the trust domain's configured anchors (a
:class:`~txtoken.keysource.KeySource`, looked up by the WIT's ``kid``), never from the token or its ``iss``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from txtoken.errors import (
    ConfigurationError,
    TokenRejected,
    WitExpired,
    WitKeyInvalid,
    WitRejected,
)
from txtoken.jws import DEFAULT_MAX_TOKEN_SIZE, CompactJws, parse_jws, verify_jws
from txtoken.keys import ALGORITHMS, Algorithm, KeySet, SigningKey, VerificationKey
from txtoken.keysource import KeySource, key_source
from txtoken.mint import encode_jws
from txtoken.verify import VerifiedTokenCache
from txtoken.wimse._hash import token_hash
from txtoken.wimse.identifier import DEFAULT_SCHEMES, check_trust_domain, check_workload_identifier

__all__ = [
    "DEFAULT_WIT_LEEWAY",
    "DEFAULT_WIT_LIFETIME",
    "WIT_TYP",
    "VerifiedWit",
    "WitIssuer",
    "WitVerifier",
    "proof_jwk",
    "public_proof_key",
]

#: JOSE ``typ`` of a WIT; media type ``application/wit+jwt``.
WIT_TYP = "wit+jwt"
#: Default WIT lifetime when issuing: one hour (the draft suggests "on the order of hours").
DEFAULT_WIT_LIFETIME = 3600
#: Default clock-skew leeway for a WIT's ``exp``, ``iat`` and ``nbf``, in seconds.
DEFAULT_WIT_LEEWAY = 30
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_CNF_MEMBERS = ("kty", "crv", "x", "y", "n", "e", "alg")


def proof_jwk(key: VerificationKey) -> dict[str, Any]:
    """The ``cnf.jwk`` for a workload's public key: its public members and its one ``alg``."""
    jwk = key.to_jwk()
    return {name: jwk[name] for name in _CNF_MEMBERS if name in jwk}


class VerifiedWit:
    """A WIT that passed verification: the token as received, the caller's identifier and proof-of-possession key.

    ``repr`` leaves the token out.
    """

    __slots__ = ("anchor_kid", "claims", "expires_at", "key", "proof_alg", "token", "wth", "workload")

    def __init__(
        self, token: str, claims: Mapping[str, Any], key: VerificationKey, proof_alg: str, anchor_kid: str
    ) -> None:
        self.token = token
        self.anchor_kid = anchor_kid  # the trust anchor's key that signed it
        self.claims: Mapping[str, Any] = MappingProxyType(dict(claims))
        self.workload: str = claims["sub"]
        self.expires_at: int = claims["exp"]
        self.key = key
        self.proof_alg = proof_alg
        self.wth = token_hash(token)

    def __repr__(self) -> str:
        return f"VerifiedWit(workload={self.workload!r}, expires_at={self.expires_at})"


def public_proof_key(
    jwk: object, algorithms: Iterable[str] = ALGORITHMS, *, what: str = "the jwk"
) -> tuple[VerificationKey, str]:
    """A workload's proof-of-possession key from a public JWK that names its ``alg``, and that ``alg``.

    Refused (:class:`~txtoken.errors.WitKeyInvalid`): not a JWK object, private members, no ``alg``, an ``alg``
    outside ``algorithms`` (never ``none``, symmetric or encryption algorithms), or a key that does not fit it.
    """
    if not isinstance(jwk, dict):
        raise WitKeyInvalid(f"{what} is missing")
    if _PRIVATE_MEMBERS & jwk.keys():
        raise WitKeyInvalid(f"{what} carries private key members")
    alg = jwk.get("alg")
    if not isinstance(alg, str):
        raise WitKeyInvalid(f"{what} has no alg")
    if alg not in algorithms:
        raise WitKeyInvalid(f"{what}.alg is not an allowed asymmetric signature algorithm")
    try:
        return VerificationKey.from_jwk(jwk), alg
    except ConfigurationError:
        raise WitKeyInvalid(f"{what} is not a usable key for its alg") from None


def _cnf_key(claims: Mapping[str, Any], algorithms: frozenset[str]) -> tuple[VerificationKey, str]:
    cnf = claims.get("cnf")
    return public_proof_key(cnf.get("jwk") if isinstance(cnf, dict) else None, algorithms, what="cnf.jwk")


class WitVerifier:
    """Verifies WITs of one trust domain against its configured trust anchors.

    Checks: size; compact JWS with an allowed ``alg``, a ``kid``, no ``crit``; ``typ`` ``wit+jwt``; the signature
    with the anchor key of that ``kid``; ``iss`` in ``issuers`` when given; ``sub`` a Workload Identifier of
    ``trust_domain`` (scheme in ``schemes``); ``exp`` (and ``iat``/``nbf`` when present) with ``leeway``; ``cnf.jwk``
    a public key whose ``alg`` is in ``proof_algorithms``. A verified WIT is cached until its ``exp`` (a caller
    presents the same WIT for its whole lifetime); ``cache_size`` 0 turns that off.
    """

    def __init__(
        self,
        anchors: KeySource | KeySet | Iterable[VerificationKey],
        *,
        trust_domain: str,
        algorithms: Iterable[str] = ALGORITHMS,
        proof_algorithms: Iterable[str] = ALGORITHMS,
        issuers: Iterable[str] | None = None,
        schemes: Iterable[str] = DEFAULT_SCHEMES,
        leeway: int = DEFAULT_WIT_LEEWAY,
        max_token_size: int = DEFAULT_MAX_TOKEN_SIZE,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.algorithms = frozenset(algorithms)
        self.proof_algorithms = frozenset(proof_algorithms)
        if (
            not self.algorithms
            or not self.proof_algorithms
            or (self.algorithms | self.proof_algorithms) - set(ALGORITHMS)
        ):
            raise ConfigurationError(f"algorithms must be non-empty subsets of {', '.join(ALGORITHMS)}")
        if leeway < 0:
            raise ConfigurationError("leeway must not be negative")
        self.trust_domain = check_trust_domain(trust_domain)
        self.anchors = key_source(anchors, clock=clock)
        self._issuers = None if issuers is None else frozenset(issuers)
        self._schemes = frozenset(schemes)
        self._leeway = leeway
        self._max_token_size = max_token_size
        self._clock = clock
        self.cache: VerifiedTokenCache[VerifiedWit] | None = (
            VerifiedTokenCache(cache_size, clock=clock) if cache_size else None
        )

    def verify(self, token: str) -> VerifiedWit:
        """Verify a WIT; raises a :class:`~txtoken.errors.WitRejected` subclass or ``KeysUnavailable``."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        jws = self._parse(token)
        try:
            key = self.anchors.cached_key(jws.header.kid) or self.anchors.fetch_key(jws.header.kid)
        except TokenRejected:  # an unknown kid; KeysUnavailable (503) passes through
            raise WitRejected("the WIT is not signed by a key of the trust domain's anchors") from None
        return self._finish(token, jws, key)

    async def averify(self, token: str) -> VerifiedWit:
        """Like :meth:`verify`; a key fetch, if one is needed, is awaited."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        jws = self._parse(token)
        try:
            key = self.anchors.cached_key(jws.header.kid) or await self.anchors.afetch_key(jws.header.kid)
        except TokenRejected:  # an unknown kid; KeysUnavailable (503) passes through
            raise WitRejected("the WIT is not signed by a key of the trust domain's anchors") from None
        return self._finish(token, jws, key)

    def _cached(self, token: str) -> VerifiedWit | None:
        if self.cache is None or len(token) > self._max_token_size:
            return None
        cached = self.cache.get(token)
        if cached is None or self.anchors.cached_key(cached.anchor_kid) is None:  # its anchor key still published
            return None
        return cached

    def _parse(self, token: str) -> CompactJws:
        try:
            jws = parse_jws(token, algorithms=self.algorithms, max_size=self._max_token_size)
        except TokenRejected as exc:
            raise WitRejected(f"the WIT is not acceptable: {exc.message}") from None
        if jws.header.media_type != WIT_TYP:
            raise WitRejected(f"the WIT's typ must be {WIT_TYP}")
        return jws

    def _finish(self, token: str, jws: CompactJws, key: VerificationKey) -> VerifiedWit:
        try:
            claims = verify_jws(jws, key)
        except TokenRejected as exc:
            raise WitRejected(f"the WIT is not acceptable: {exc.message}") from None
        if self._issuers is not None and claims.get("iss") not in self._issuers:
            raise WitRejected("the WIT's iss is not an authorized issuer of the trust domain")
        check_workload_identifier(claims.get("sub"), self.trust_domain, schemes=self._schemes)
        self._check_times(claims)
        proof_key, proof_alg = _cnf_key(claims, self.proof_algorithms)
        verified = VerifiedWit(token, claims, proof_key, proof_alg, key.kid)
        if self.cache is not None:
            self.cache.put(verified)
        return verified

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        exp = claims.get("exp")
        if type(exp) is not int:
            raise WitRejected("the WIT's exp is missing or not an integer")
        if now >= exp + self._leeway:
            raise WitExpired("the WIT has expired")
        for name in ("iat", "nbf"):
            value = claims.get(name)
            if value is None:
                continue
            if type(value) is not int:
                raise WitRejected(f"the WIT's {name} is not an integer")
            if value > now + self._leeway:
                raise WitRejected(f"the WIT's {name} is in the future")


class WitIssuer:
    """Issues WITs for workloads of one trust domain, signed with the active key of ``keys`` (the trust domain's
    WIT key set, separate from its Txn-Token keys)."""

    def __init__(
        self,
        keys: KeySet,
        *,
        trust_domain: str,
        issuer: str | None = None,
        lifetime: int = DEFAULT_WIT_LIFETIME,
        schemes: Iterable[str] = DEFAULT_SCHEMES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lifetime <= 0:
            raise ConfigurationError("a WIT lifetime must be positive")
        self.keys = keys
        self.trust_domain = check_trust_domain(trust_domain)
        self.issuer = issuer
        self.lifetime = lifetime
        self._schemes = frozenset(schemes)
        self._clock = clock

    def issue(self, workload: str, key: VerificationKey, *, lifetime: int | None = None) -> str:
        """A WIT for ``workload`` (a Workload Identifier of this trust domain) bound to the public ``key``."""
        try:
            check_workload_identifier(workload, self.trust_domain, schemes=self._schemes)
        except WitRejected as exc:
            raise ConfigurationError(exc.message) from None
        now = int(self._clock())
        claims: dict[str, Any] = {
            "sub": workload,
            "iat": now,
            "exp": now + (self.lifetime if lifetime is None else lifetime),
            "jti": secrets.token_urlsafe(16),
            "cnf": {"jwk": proof_jwk(key)},
        }
        if self.issuer is not None:
            claims["iss"] = self.issuer
        return encode_jws(claims, self.keys.active, typ=WIT_TYP)

    def issue_with_new_key(self, workload: str, alg: Algorithm = "ES256") -> tuple[str, SigningKey]:
        """A fresh workload key and a WIT for it (for tests, demos and agents that hold the key themselves)."""
        key = SigningKey.generate(alg)
        return self.issue(workload, key.verification_key), key
