"""Txn-Token verification, hardened per RFC 8725 and §12.2 of the draft.

Checks, in order: size (before any parsing); compact JWS shape; header (``alg`` in an explicit allow-list of
asymmetric algorithms, a ``kid``, no ``crit``); ``typ`` is ``txntoken+jwt``; the key for ``kid`` comes from the
configured key source (never from ``jku``, ``x5u``, ``jwk`` or ``x5c``) and is bound to the header's ``alg``;
signature; payload JSON without duplicate members; claim names of older drafts refused unless allowed; every
required claim present and well typed; ``aud`` is this verifier's trust domain; ``iss`` if one is configured;
``exp``, ``iat`` and ``nbf`` with a small leeway; ``exp - iat`` no longer than the maximum lifetime.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from txtoken.claims import TXN_TOKEN_TYP, TxnTokenClaims, map_legacy_claims, validation_summary
from txtoken.errors import (
    AudienceMismatch,
    ClaimInvalid,
    ConfigurationError,
    LifetimeTooLong,
    TokenExpired,
    TokenNotYetValid,
    TypMismatch,
)
from txtoken.jws import DEFAULT_MAX_TOKEN_SIZE, CompactJws, parse_jws, typ_matches, verify_jws
from txtoken.keys import ALGORITHMS, KeySet, VerificationKey
from txtoken.keysource import KeySource, key_source

__all__ = ["DEFAULT_LEEWAY", "DEFAULT_MAX_LIFETIME", "TxnTokenVerifier", "VerifiedTokenCache", "VerifiedTxnToken"]

#: Default cap on a Txn-Token's lifetime (``exp - iat``), in seconds, for minting and verification alike.
DEFAULT_MAX_LIFETIME = 300
#: Default clock-skew leeway, in seconds.
DEFAULT_LEEWAY = 30
_LEGACY_TYP = "txn_token"


@dataclass(frozen=True, slots=True)
class VerifiedTxnToken:
    """A Txn-Token that passed verification: the token exactly as received, and its claims.

    ``token`` is left out of ``repr`` so that logging this object never logs the token.
    """

    token: str = field(repr=False)
    claims: TxnTokenClaims
    kid: str

    @property
    def txn(self) -> str:
        return self.claims.txn

    @property
    def sub(self) -> str:
        return self.claims.sub

    @property
    def scopes(self) -> frozenset[str]:
        return self.claims.scopes

    @property
    def tctx(self) -> Mapping[str, Any]:
        return self.claims.tctx or {}

    @property
    def rctx(self) -> Mapping[str, Any]:
        return self.claims.rctx or {}

    @property
    def req_wl(self) -> str:
        return self.claims.req_wl

    @property
    def expires_at(self) -> int:
        return self.claims.exp


class VerifiedTokenCache:
    """Tokens already verified, keyed by the SHA-256 of the token, each dropped at its ``exp``.

    Bounded: when full, the oldest entries go first. A hit skips the signature check, so a token seen again (fan-out,
    retries) costs a hash and a lookup.
    """

    def __init__(self, max_entries: int = 10_000, *, clock: Callable[[], float] = time.time) -> None:
        if max_entries < 1:
            raise ConfigurationError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[bytes, VerifiedTxnToken] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode("ascii", "replace")).digest()

    def get(self, token: str) -> VerifiedTxnToken | None:
        key = self._key(token)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() >= entry.claims.exp:
            self._entries.pop(key, None)
            return None
        return entry

    def put(self, verified: VerifiedTxnToken) -> None:
        key = self._key(verified.token)
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._evict()
            self._entries[key] = verified

    def _evict(self) -> None:
        now = self._clock()
        expired = [k for k, v in self._entries.items() if now >= v.claims.exp]
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
        self.keys = key_source(keys)
        self._algorithms = allowed
        self._issuer = issuer
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._max_token_size = max_token_size
        self._legacy = legacy_claims
        self._clock = clock
        self.cache = VerifiedTokenCache(cache_size, clock=clock) if cache_size else None

    def verify(self, token: str) -> VerifiedTxnToken:
        """Verify a Txn-Token; raises a :class:`~txtoken.errors.TokenRejected` subclass or ``KeysUnavailable``."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        jws = self._parse(token)
        key = self.keys.cached_key(jws.header.kid) or self.keys.fetch_key(jws.header.kid)
        return self._finish(token, jws, key)

    async def averify(self, token: str) -> VerifiedTxnToken:
        """Like :meth:`verify`; a key fetch, if one is needed, is awaited."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        jws = self._parse(token)
        key = self.keys.cached_key(jws.header.kid) or await self.keys.afetch_key(jws.header.kid)
        return self._finish(token, jws, key)

    def _cached(self, token: str) -> VerifiedTxnToken | None:
        if self.cache is None or len(token) > self._max_token_size:
            return None
        return self.cache.get(token)

    def _parse(self, token: str) -> CompactJws:
        jws = parse_jws(token, algorithms=self._algorithms, max_size=self._max_token_size)
        typ = jws.header.typ
        if not typ_matches(typ, TXN_TOKEN_TYP) and not (self._legacy and typ_matches(typ, _LEGACY_TYP)):
            raise TypMismatch(f"typ must be {TXN_TOKEN_TYP}")
        return jws

    def _finish(self, token: str, jws: CompactJws, key: VerificationKey) -> VerifiedTxnToken:
        payload = map_legacy_claims(verify_jws(jws, key), allow=self._legacy)
        try:
            claims = TxnTokenClaims.model_validate(payload)
        except ValidationError as exc:
            raise ClaimInvalid(validation_summary(exc)) from None
        self._check_claims(claims)
        verified = VerifiedTxnToken(token, claims, key.kid)
        if self.cache is not None:
            self.cache.put(verified)
        return verified

    def _check_claims(self, claims: TxnTokenClaims) -> None:
        if claims.aud != self.trust_domain:
            raise AudienceMismatch("aud is not this trust domain")
        if self._issuer is not None and claims.iss != self._issuer:
            raise ClaimInvalid("iss is not the configured issuer")
        now = self._clock()
        if now >= claims.exp + self._leeway:
            raise TokenExpired("token has expired")
        if claims.iat > now + self._leeway:
            raise TokenNotYetValid("iat is in the future")
        nbf = (claims.model_extra or {}).get("nbf")
        if nbf is not None:
            if type(nbf) is not int:
                raise ClaimInvalid("nbf: int_type")
            if nbf > now + self._leeway:
                raise TokenNotYetValid("nbf is in the future")
        lifetime = claims.exp - claims.iat
        if lifetime <= 0:
            raise ClaimInvalid("exp is not after iat")
        if lifetime > self._max_lifetime:
            raise LifetimeTooLong(f"lifetime {lifetime}s exceeds {self._max_lifetime}s")
