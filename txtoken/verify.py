"""Txn-Token verification, hardened per RFC 8725 and §12.2 of the draft.

Checks, in order: size (before any parsing); compact JWS shape; header (``alg`` in an explicit allow-list of
asymmetric algorithms, ``kid`` a non-empty string if present, no ``crit``); ``typ`` is ``txntoken+jwt``; the key for
``kid`` comes from the configured key source (never from ``jku``, ``x5u``, ``jwk`` or ``x5c``) and is bound to the
header's ``alg`` (without ``kid``: the only key the source holds for that ``alg``, refused if there are several);
signature; payload JSON without duplicate members; claim names of older drafts refused unless allowed; every
required claim present and well typed (NumericDates may be non-integer); ``aud`` is this verifier's trust domain
(a string, or an array of that one string); ``iss`` if one is configured; ``exp``, ``iat`` and ``nbf`` with a small
leeway; ``exp - iat`` no longer than the maximum lifetime.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar

from txtoken import telemetry
from txtoken.claims import TXN_TOKEN_TYP, TxnTokenClaims, check_claims, is_numeric_date, map_legacy_claims
from txtoken.errors import (
    AudienceMismatch,
    ClaimInvalid,
    ConfigurationError,
    LifetimeTooLong,
    TokenExpired,
    TokenNotYetValid,
    TypMismatch,
)
from txtoken.jws import DEFAULT_MAX_TOKEN_SIZE, CompactJws, parse_jws, verify_jws
from txtoken.keys import ALGORITHMS, KeySet, VerificationKey
from txtoken.keysource import KeySource, afind_sole_kid, find_sole_kid, key_source

__all__ = ["DEFAULT_LEEWAY", "DEFAULT_MAX_LIFETIME", "TxnTokenVerifier", "VerifiedTokenCache", "VerifiedTxnToken"]

#: Default cap on a Txn-Token's lifetime (``exp - iat``), in seconds, for minting and verification alike.
DEFAULT_MAX_LIFETIME = 300
#: Default clock-skew leeway, in seconds.
DEFAULT_LEEWAY = 30
_LEGACY_TYP = "txn_token"


class VerifiedTxnToken:
    """A Txn-Token that passed verification: the token exactly as received, its claims, and the ``kid`` it was
    verified with. Read-only; ``repr`` leaves the token out, so logging this object never logs the token.

    The accessors (``txn``, ``sub``, ``scopes``, ``tctx``, …) read the verified payload directly; ``claims``, the
    :class:`~txtoken.claims.TxnTokenClaims` model, is built on first use.
    """

    __slots__ = ("_claims", "_kid", "_payload", "_scopes", "_token")

    def __init__(self, token: str, claims: TxnTokenClaims, kid: str) -> None:
        self._token = token
        self._kid = kid
        self._payload: Mapping[str, Any] = claims.to_dict()
        self._claims: TxnTokenClaims | None = claims
        self._scopes: frozenset[str] | None = None

    @classmethod
    def _checked(cls, token: str, payload: Mapping[str, Any], kid: str) -> VerifiedTxnToken:
        """From a payload that passed :func:`~txtoken.claims.check_claims` (the verifier's fast path)."""
        verified = cls.__new__(cls)
        verified._token = token
        verified._kid = kid
        verified._payload = payload
        verified._claims = None
        verified._scopes = None
        return verified

    def __repr__(self) -> str:
        return f"VerifiedTxnToken(txn={self.txn!r}, sub={self.sub!r}, kid={self.kid!r})"

    @property
    def token(self) -> str:
        """The Txn-Token exactly as received: what outbound calls forward."""
        return self._token

    @property
    def kid(self) -> str:
        return self._kid

    @property
    def claims(self) -> TxnTokenClaims:
        claims = self._claims
        if claims is None:
            claims = self._claims = TxnTokenClaims.model_validate(self._payload)
        return claims

    @property
    def txn(self) -> str:
        return str(self._payload["txn"])

    @property
    def sub(self) -> str:
        return str(self._payload["sub"])

    @property
    def scope(self) -> str:
        return str(self._payload["scope"])

    @property
    def scopes(self) -> frozenset[str]:
        scopes = self._scopes
        if scopes is None:
            scopes = self._scopes = frozenset(self.scope.split())
        return scopes

    @property
    def req_wl(self) -> str:
        return str(self._payload["req_wl"])

    @property
    def tctx(self) -> Mapping[str, Any]:
        return MappingProxyType(self._payload.get("tctx") or {})

    @property
    def rctx(self) -> Mapping[str, Any]:
        return MappingProxyType(self._payload.get("rctx") or {})

    @property
    def expires_at(self) -> int:
        return int(self._payload["exp"])


class _Expiring(Protocol):
    @property
    def token(self) -> str: ...

    @property
    def expires_at(self) -> int: ...


_Verified = TypeVar("_Verified", bound=_Expiring)


class VerifiedTokenCache(Generic[_Verified]):
    """Tokens already verified (Txn-Tokens, WITs), keyed by the token itself, each dropped at its ``exp``.

    Bounded: when full, the oldest entries go first. A hit skips the signature check, so a token seen again (fan-out,
    retries) costs a hash and a lookup. The verifier serves a hit only while the key it was verified with is still
    published, so retiring a key (a compromised one) takes effect at once, cached tokens included.
    """

    def __init__(self, max_entries: int = 10_000, *, clock: Callable[[], float] = time.time) -> None:
        if max_entries < 1:
            raise ConfigurationError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, _Verified] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> _Verified | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if self._clock() >= entry.expires_at:
            self._entries.pop(token, None)
            return None
        return entry

    def put(self, verified: _Verified) -> None:
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._evict()
            self._entries[verified.token] = verified

    def _evict(self) -> None:
        now = self._clock()
        expired = [k for k, v in self._entries.items() if now >= v.expires_at]
        for k in expired:
            del self._entries[k]
        while len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]

    def __len__(self) -> int:
        return len(self._entries)


class TxnTokenVerifier:
    """Verifies Txn-Tokens for one trust domain.

    ``keys`` is a :class:`~txtoken.keysource.KeySource`, a :class:`~txtoken.keys.KeySet` or verification keys.
    ``cache_size`` bounds the cache of verified tokens; 0 turns it off. ``legacy_claims`` accepts the claim names
    and ``typ`` of older drafts, mapped to the current names. Use :meth:`verify` in sync code and :meth:`averify` in
    async code (it never blocks the event loop on a key fetch).
    """

    def __init__(
        self,
        keys: KeySource | KeySet | Iterable[VerificationKey],
        *,
        trust_domain: str,
        algorithms: Iterable[str] = ALGORITHMS,
        issuer: str | None = None,
        leeway: int = DEFAULT_LEEWAY,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
        max_token_size: int = DEFAULT_MAX_TOKEN_SIZE,
        cache_size: int = 10_000,
        legacy_claims: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        allowed = frozenset(algorithms)
        unsupported = allowed - set(ALGORITHMS)
        if unsupported or not allowed:
            raise ConfigurationError(f"algorithms must be a non-empty subset of {', '.join(ALGORITHMS)}")
        if not trust_domain:
            raise ConfigurationError("a verifier needs its trust domain")
        if leeway < 0 or max_lifetime <= 0 or max_token_size <= 0:
            raise ConfigurationError("leeway, max_lifetime and max_token_size must be positive")
        self.trust_domain = trust_domain
        self.keys = key_source(keys, clock=clock)
        self._algorithms = allowed
        self._issuer = issuer
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._max_token_size = max_token_size
        self._legacy = legacy_claims
        self._media_types = {TXN_TOKEN_TYP, _LEGACY_TYP} if legacy_claims else {TXN_TOKEN_TYP}
        self._clock = clock
        self.cache: VerifiedTokenCache[VerifiedTxnToken] | None = (
            VerifiedTokenCache(cache_size, clock=clock) if cache_size else None
        )

    def verify(self, token: str) -> VerifiedTxnToken:
        """Verify a Txn-Token; raises a :class:`~txtoken.errors.TokenRejected` subclass or ``KeysUnavailable``."""
        observer = telemetry.observer
        if observer is None:
            return self._cached(token) or self._verify(token)
        with observer.operation("verify") as outcome:
            return _verified(outcome, self._cached(token) or self._verify(token))

    async def averify(self, token: str) -> VerifiedTxnToken:
        """Like :meth:`verify`; a key fetch, if one is needed, is awaited."""
        observer = telemetry.observer
        if observer is None:
            return self._cached(token) or await self._averify(token)
        with observer.operation("verify") as outcome:
            return _verified(outcome, self._cached(token) or await self._averify(token))

    def _cached(self, token: str) -> VerifiedTxnToken | None:
        """The token from the cache, while the key it was verified with is still published."""
        if self.cache is None or len(token) > self._max_token_size:
            return None
        cached = self.cache.get(token)
        if cached is None or self.keys.cached_key(cached.kid) is None:
            return None
        return cached

    def _verify(self, token: str) -> VerifiedTxnToken:
        jws = self._parse(token)
        kid = jws.header.kid or find_sole_kid(self.keys, jws.header.alg)
        key = self.keys.cached_key(kid) or self.keys.fetch_key(kid)
        return self._finish(token, jws, key)

    async def _averify(self, token: str) -> VerifiedTxnToken:
        jws = self._parse(token)
        kid = jws.header.kid or await afind_sole_kid(self.keys, jws.header.alg)
        key = self.keys.cached_key(kid) or await self.keys.afetch_key(kid)
        return self._finish(token, jws, key)

    def _parse(self, token: str) -> CompactJws:
        jws = parse_jws(token, algorithms=self._algorithms, max_size=self._max_token_size, require_kid=False)
        if jws.header.media_type not in self._media_types:
            raise TypMismatch(f"typ must be {TXN_TOKEN_TYP}")
        return jws

    def _finish(self, token: str, jws: CompactJws, key: VerificationKey) -> VerifiedTxnToken:
        payload = map_legacy_claims(verify_jws(jws, key), allow=self._legacy)
        check_claims(payload)
        self._check_times(payload)
        verified = VerifiedTxnToken._checked(token, payload, key.kid)
        if self.cache is not None:
            self.cache.put(verified)
        return verified

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        aud = claims["aud"]
        if aud != self.trust_domain and (type(aud) is not list or aud[0] != self.trust_domain):
            raise AudienceMismatch("aud is not this trust domain")
        if self._issuer is not None and claims.get("iss") != self._issuer:
            raise ClaimInvalid("iss is not the configured issuer")
        now = self._clock()
        iat, exp = claims["iat"], claims["exp"]
        if now >= exp + self._leeway:
            raise TokenExpired("token has expired")
        if iat > now + self._leeway:
            raise TokenNotYetValid("iat is in the future")
        nbf = claims.get("nbf")
        if nbf is not None:
            if not is_numeric_date(nbf):
                raise ClaimInvalid("nbf: numeric_date_type")
            if nbf > now + self._leeway:
                raise TokenNotYetValid("nbf is in the future")
        lifetime = exp - iat
        if lifetime <= 0:
            raise ClaimInvalid("exp is not after iat")
        if lifetime > self._max_lifetime:
            raise LifetimeTooLong(f"lifetime {lifetime}s exceeds {self._max_lifetime}s")


def _verified(outcome: telemetry.Outcome, verified: VerifiedTxnToken) -> VerifiedTxnToken:
    outcome.annotate("kid", verified.kid)
    outcome.annotate("txn", verified.txn)
    return verified
