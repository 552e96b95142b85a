"""The verified-token cache: a token seen again skips the key lookup and the signature check, until its ``exp``."""

from __future__ import annotations

import pytest

from txtoken import SigningKey, StaticKeySource, VerificationKey
from txtoken.errors import AudienceMismatch, ConfigurationError, SignatureInvalid, TokenExpired, UnknownKey
from txtoken.verify import VerifiedTokenCache

from .conftest import NOW, FakeClock, claims, raises_exactly, rejected, token, verifier


class CountingKeySource:
    """Wraps a key source and counts every lookup: a cache hit makes none."""

    def __init__(self, *keys: SigningKey) -> None:
        self.inner = StaticKeySource([k.verification_key for k in keys])
        self.lookups = 0

    def cached_key(self, kid: str) -> VerificationKey | None:
        self.lookups += 1
        return self.inner.cached_key(kid)

    def fetch_key(self, kid: str) -> VerificationKey:
        self.lookups += 1
        return self.inner.fetch_key(kid)

    async def afetch_key(self, kid: str) -> VerificationKey:
        self.lookups += 1
        return await self.inner.afetch_key(kid)

    def sole_kid(self, alg: str) -> str | None:
        self.lookups += 1
        return self.inner.sole_kid(alg)


def test_second_verify_skips_key_lookup_and_signature_check(es256: SigningKey) -> None:
    """No key lookup means no signature check: the signature cannot be checked without the key."""
    source = CountingKeySource(es256)
    v = verifier(source, cache_size=100)
    tok = token(es256)
    first = v.verify(tok)
    assert source.lookups == 1
    again = v.verify(tok)
    assert again is first
    assert source.lookups == 1


@pytest.mark.anyio
async def test_async_verify_uses_the_same_cache(es256: SigningKey) -> None:
    source = CountingKeySource(es256)
    v = verifier(source, cache_size=100)
    tok = token(es256)
    first = await v.averify(tok)
    assert await v.averify(tok) is first
    assert v.verify(tok) is first
    assert source.lookups == 1


def test_swapped_key_source_proves_the_hit(es256: SigningKey) -> None:
    v = verifier(es256, cache_size=100)
    tok = token(es256)
    v.verify(tok)
    v.keys = StaticKeySource([])  # no keys at all any more
    assert v.verify(tok).sub == "user-42"  # from the cache
    rejected(v, token(es256, payload=claims(txn="other")), UnknownKey, "kid_unknown")  # anything else needs a key


def test_entries_are_dropped_at_exp(es256: SigningKey) -> None:
    clock = FakeClock(NOW)
    source = CountingKeySource(es256)
    v = verifier(source, clock=clock, cache_size=100)  # leeway 30
    tok = token(es256)  # exp = NOW + 120
    v.verify(tok)
    assert v.cache is not None and len(v.cache) == 1
    clock.now = NOW + 119
    v.verify(tok)
    assert source.lookups == 1
    clock.now = NOW + 120
    assert v.cache.get(tok) is None  # at exp the entry is gone...
    assert len(v.cache) == 0
    v.verify(tok)  # ...so the token is verified again (still within the leeway)
    assert source.lookups == 2
    clock.now = NOW + 150
    rejected(v, tok, TokenExpired, "token_expired")


def test_cache_is_bounded_and_drops_expired_entries_first(es256: SigningKey) -> None:
    clock = FakeClock(NOW)
    source = CountingKeySource(es256)
    v = verifier(source, clock=clock, cache_size=3)
    short_1, long_lived, short_2 = (
        token(es256, payload=claims(txn="a", exp=NOW + 10)),
        token(es256, payload=claims(txn="b", exp=NOW + 200)),
        token(es256, payload=claims(txn="c", exp=NOW + 10)),
    )
    for tok in (short_1, long_lived, short_2):
        v.verify(tok)
    assert v.cache is not None and len(v.cache) == 3
    clock.now = NOW + 15
    newcomer = token(es256, payload=claims(txn="d", exp=NOW + 200))
    v.verify(newcomer)
    assert len(v.cache) == 2  # both expired entries went, the live one stayed
    lookups = source.lookups
    v.verify(long_lived)
    v.verify(newcomer)
    assert source.lookups == lookups
    # When nothing has expired, the oldest entry goes first.
    many = [token(es256, payload=claims(txn=f"m{i}", exp=NOW + 300)) for i in range(5)]
    for tok in many:
        v.verify(tok)
    assert len(v.cache) == 3
    lookups = source.lookups
    v.verify(many[-1])
    assert source.lookups == lookups  # the newest is cached
    v.verify(many[0])
    assert source.lookups == lookups + 1  # the oldest was evicted


def test_cache_size_zero_turns_it_off(es256: SigningKey) -> None:
    source = CountingKeySource(es256)
    v = verifier(source, cache_size=0)
    assert v.cache is None
    tok = token(es256)
    for _ in range(3):
        v.verify(tok)
    assert source.lookups == 3


def test_cache_never_serves_a_different_token(es256: SigningKey) -> None:
    """The cache key is the exact token: another signature on the same header and claims is checked on its own."""
    v = verifier(es256, cache_size=100)
    tok = token(es256)
    v.verify(tok)
    head, payload, signature = tok.split(".")
    forged_signature = ("B" if signature[0] == "A" else "A") + signature[1:]
    rejected(v, f"{head}.{payload}.{forged_signature}", SignatureInvalid, "signature_invalid")
    rejected(v, f"{head}.{payload}.{forged_signature}", SignatureInvalid, "signature_invalid")  # failures not cached
    assert v.cache is not None and len(v.cache) == 1


def test_cache_is_per_verifier(es256: SigningKey) -> None:
    """A token cached by one verifier does not pass another verifier's checks (e.g. another trust domain)."""
    tok = token(es256)
    verifier(es256, cache_size=100).verify(tok)
    other = verifier(es256, cache_size=100)
    other.trust_domain = "other.example"
    rejected(other, tok, AudienceMismatch, "aud_invalid")


def test_cache_needs_a_positive_size() -> None:
    raises_exactly(ConfigurationError, "configuration_error", lambda: VerifiedTokenCache(0))
