"""Validation of the JWTs the TTS receives (client assertions, subject tokens), each kind with its own rules.

Every JWT goes through the core's hardened path (:func:`~txtoken.jws.parse_jws`, then
:func:`~txtoken.jws.verify_jws`); what differs per kind is the accepted ``typ`` values, the audience, the required
claims and the maximum age, given as :class:`JwtRules`. ``exp`` gets no leeway: an expired token is refused (§6).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic_core

from txtoken.errors import (
    AudienceMismatch,
    ClaimInvalid,
    ConfigurationError,
    LifetimeTooLong,
    TokenExpired,
    TokenMalformed,
    TokenNotYetValid,
    TypMismatch,
)
from txtoken.jws import CompactJws, b64url_decode, media_type, parse_jws, verify_jws
from txtoken.keys import VerificationKey
from txtoken.keysource import KeySource, afind_sole_kid

__all__ = ["NO_TYP", "JwtRules", "VerifiedJwtCache", "claims_match", "peek_claims", "verify_jwt"]

#: Stands for an absent ``typ`` header in :attr:`JwtRules.typs`.
NO_TYP = ""
_NUMERIC_DATES = ("exp", "iat", "nbf")
_STRINGS = ("iss", "sub", "jti", "client_id")


@dataclass(frozen=True, slots=True)
class JwtRules:
    """What one kind of JWT must look like.

    ``max_lifetime`` caps ``exp - iat`` and ``exp - now`` (a client assertion's lifetime); ``sole_audience`` admits
    an ``aud`` array only if its one member is accepted (rfc7523bis: an assertion is for one audience).
    """

    typs: frozenset[str]
    audiences: frozenset[str]
    required: tuple[str, ...] = ("iss", "sub", "exp")
    leeway: int = 30
    max_age: int | None = None
    max_lifetime: int | None = None
    sole_audience: bool = False


def peek_claims(jws: CompactJws) -> dict[str, Any]:
    """The payload of a JWS *before* its signature is checked: only to choose the keys it must verify with."""
    try:
        # pydantic-core's parser: a quarter of json.loads's cost, and every token the TTS receives is peeked at. Like
        # json.loads it keeps the last of duplicate members; the signature check's strict parser refuses them.
        value = pydantic_core.from_json(b64url_decode(jws.payload), allow_inf_nan=False)
    except ValueError:
        raise TokenMalformed("payload is not JSON") from None
    if not isinstance(value, dict):
        raise TokenMalformed("payload is not a JSON object")
    return value


@functools.lru_cache(maxsize=64)
def _media_types(typs: frozenset[str]) -> frozenset[str]:
    """The media types the ``typ`` values in ``typs`` name (:func:`~txtoken.jws.media_type`), :data:`NO_TYP` left
    out: computed once per set of rules rather than for each token."""
    return frozenset(media_type(t) or "" for t in typs if t)


def _check_types(claims: Mapping[str, Any], required: tuple[str, ...]) -> None:
    for name in required:
        if name not in claims:
            raise ClaimInvalid(f"{name}: missing")
    for name in _NUMERIC_DATES:
        value = claims.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ClaimInvalid(f"{name}: not a NumericDate")
    for name in _STRINGS:
        value = claims.get(name)
        if value is not None and (not isinstance(value, str) or not value):
            raise ClaimInvalid(f"{name}: not a non-empty string")
    aud = claims.get("aud")
    if aud is not None and not (
        (isinstance(aud, str) and aud) or (isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud))
    ):
        raise ClaimInvalid("aud: not a string or a list of strings")


def _check_times(claims: Mapping[str, Any], rules: JwtRules, now: float) -> None:
    exp = claims.get("exp")
    if exp is not None and now >= exp:
        raise TokenExpired("token has expired")
    nbf = claims.get("nbf")
    if nbf is not None and nbf > now + rules.leeway:
        raise TokenNotYetValid("nbf is in the future")
    iat = claims.get("iat")
    if iat is not None:
        if iat > now + rules.leeway:
            raise TokenNotYetValid("iat is in the future")
        if rules.max_age is not None and now - iat > rules.max_age + rules.leeway:
            raise TokenExpired("iat is too far in the past")
    if rules.max_lifetime is not None and exp is not None:
        if iat is not None and exp - iat > rules.max_lifetime:
            raise LifetimeTooLong(f"exp - iat exceeds {rules.max_lifetime} s")
        if exp - now > rules.max_lifetime + rules.leeway:
            raise LifetimeTooLong(f"exp is more than {rules.max_lifetime} s away")


def _check_audience(claims: Mapping[str, Any], rules: JwtRules) -> None:
    aud = claims.get("aud")
    values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not rules.audiences.intersection(values):
        raise AudienceMismatch("aud is not an accepted audience")
    if rules.sole_audience and len(values) != 1:
        raise AudienceMismatch("aud must name only this service")


class VerifiedJwtCache:
    """JWTs whose signature was checked, keyed by the whole token, each kept until its ``exp`` at the latest.

    Only the signature check (and the payload's parsing) is saved: a hit still needs the same key object to be served
    for the token's ``kid`` (a key rotated out or dropped by its issuer ends the entry's use), and every claim check
    runs again at each use. Bounded: when full, expired entries go, then the oldest. Never for tokens whose ``jti``
    must be used once (key-pair client assertions): those always go through the replay check.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ConfigurationError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._entries: dict[str, tuple[VerificationKey, dict[str, Any], float]] = {}
        self._lock = threading.Lock()

    def get(self, token: str, key: VerificationKey, now: float) -> dict[str, Any] | None:
        """A copy of the claims of ``token`` if it was verified with ``key`` and has not expired."""
        entry = self._entries.get(token)
        if entry is None or entry[0] is not key:
            return None
        if now >= entry[2]:
            self._entries.pop(token, None)
            return None
        return dict(entry[1])

    def put(self, token: str, key: VerificationKey, claims: dict[str, Any], now: float) -> None:
        """Remember a verified token; one without a numeric ``exp``, or already expired, is not kept."""
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float) or now >= exp:
            return
        with self._lock:
            if len(self._entries) >= self._max_entries:
                expired = [k for k, (_, _, until) in self._entries.items() if now >= until]
                for k in expired:
                    del self._entries[k]
                while len(self._entries) >= self._max_entries:
                    del self._entries[next(iter(self._entries))]
            self._entries[token] = (key, dict(claims), float(exp))

    def __len__(self) -> int:
        return len(self._entries)


async def verify_jwt(
    token: str | CompactJws,
    *,
    keys: KeySource,
    algorithms: frozenset[str],
    rules: JwtRules,
    now: float,
    cache: VerifiedJwtCache | None = None,
) -> dict[str, Any]:
    """Check ``token`` against ``rules`` with the key its ``kid`` names in ``keys`` (without ``kid``: the only key
    ``keys`` hold for its ``alg``); returns its claims.

    With a ``cache``, a token verified before with the same key skips the signature check (the claim checks run).
    Raises a :class:`~txtoken.errors.TokenRejected` subclass, or ``KeysUnavailable`` if the keys cannot be had.
    """
    jws = parse_jws(token, algorithms=algorithms, require_kid=False) if isinstance(token, str) else token
    if jws.header.alg not in algorithms:
        raise TokenMalformed("algorithm not allowed")
    header = jws.header
    if not (header.typ is None and NO_TYP in rules.typs) and header.media_type not in _media_types(rules.typs):
        raise TypMismatch("typ is not accepted for this kind of token")
    kid = jws.header.kid or await afind_sole_kid(keys, jws.header.alg)
    key = keys.cached_key(kid) or await keys.afetch_key(kid)
    if cache is None:
        claims = verify_jws(jws, key)
    else:
        compact = f"{jws.signing_input.decode('ascii')}.{jws.signature}"
        cached = cache.get(compact, key, now)
        if cached is None:
            claims = verify_jws(jws, key)
            cache.put(compact, key, claims, now)
        else:
            claims = cached
    _check_types(claims, rules.required)
    _check_times(claims, rules, now)
    _check_audience(claims, rules)
    return claims


def _same(actual: Any, expected: Any) -> bool:
    return type(actual) is type(expected) and actual == expected


def claims_match(rule: Mapping[str, Any], claims: Mapping[str, Any]) -> bool:
    """Whether ``claims`` satisfy ``rule``: a scalar must be equal, a list lists the accepted values, a table
    (dict) matches a nested claim object member by member."""
    for name, expected in rule.items():
        if name not in claims:
            return False
        actual = claims[name]
        if isinstance(expected, dict):
            if not isinstance(actual, dict) or not claims_match(expected, actual):
                return False
        elif isinstance(expected, list):
            if not any(_same(actual, value) for value in expected):
                return False
        elif not _same(actual, expected):
            return False
    return True
