"""The verified-token cache: a token seen again skips the key lookup and the signature check, until its ``exp``."""

from __future__ import annotations

import pytest

from txtoken import KeySet, SigningKey, StaticKeySource, VerificationKey
from txtoken.errors import AudienceMismatch, ConfigurationError, SignatureInvalid, TokenExpired, UnknownKey
from txtoken.verify import VerifiedTokenCache

from .conftest import NOW, FakeClock, claims, raises_exactly, rejected, token, verifier


class CountingKeySource:
    """A static key source whose keys count their signature checks: a cache hit makes none."""

    def __init__(self, *keys: SigningKey) -> None:
        source = self

        class CountingKey(VerificationKey):
            __slots__ = ()

            def verify(self, signing_input: bytes, signature: bytes) -> bool:
                source.signature_checks += 1
                return super().verify(signing_input, signature)

        self.inner = StaticKeySource([CountingKey(k.kid, k.alg, k.private_key.public_key()) for k in keys])
        self.signature_checks = 0

    def cached_key(self, kid: str) -> VerificationKey | None:
        return self.inner.cached_key(kid)

    def fetch_key(self, kid: str) -> VerificationKey:
        return self.inner.fetch_key(kid)

    async def afetch_key(self, kid: str) -> VerificationKey:
        return await self.inner.afetch_key(kid)

    def sole_kid(self, alg: str) -> str | None:
        return self.inner.sole_kid(alg)


def test_second_verify_skips_key_lookup_and_signature_check(es256: SigningKey) -> None:
    """No key lookup means no signature check: the signature cannot be checked without the key."""
    source = CountingKeySource(es256)
    v = verifier(source, cache_size=100)
    tok = token(es256)
    first = v.verify(tok)
    assert source.signature_checks == 1
    again = v.verify(tok)
    assert again is first
    assert source.signature_checks == 1


@pytest.mark.anyio
async def test_async_verify_uses_the_same_cache(es256: SigningKey) -> None:
    source = CountingKeySource(es256)
    v = verifier(source, cache_size=100)
    tok = token(es256)
    first = await v.averify(tok)
    assert await v.averify(tok) is first
    assert v.verify(tok) is first
    assert source.signature_checks == 1


def test_swapped_key_source_proves_the_hit(es256: SigningKey) -> None:
    v = verifier(es256, cache_size=100)
    tok = token(es256)
    v.verify(tok)
    impostor = VerificationKey.from_public_key(SigningKey.generate().private_key.public_key(), kid=es256.kid)
    v.keys = StaticKeySource([impostor])  # same kid, another key: a signature check would fail
    assert v.verify(tok).sub == "user-42"  # from the cache
    rejected(v, token(es256, payload=claims(txn="other")), SignatureInvalid, "signature_invalid")  # the rest: checked


def test_a_cached_token_is_refused_once_its_key_is_no_longer_published(es256: SigningKey) -> None:
    """issue 10: a verified token stayed cached after its key was retired or removed from the key source."""
    clock = FakeClock(NOW)
    old, new = es256, SigningKey.generate()
    keys = KeySet(old).rotate(new, overlap=60, now=NOW)
    v = verifier(StaticKeySource.from_key_set(keys, clock=clock), clock=clock, cache_size=100)
    tok = token(old)  # exp = NOW + 120, beyond the old key's retirement
    assert v.verify(tok).kid == old.kid
    clock.now = NOW + 59
    assert v.verify(tok).kid == old.kid  # within the overlap
    clock.now = NOW + 60  # retired (a compromised key is retired with --overlap 0)
    rejected(v, tok, UnknownKey, "kid_unknown")
    v.keys = StaticKeySource([new.verification_key])  # removed from the key source: the same
    rejected(v, tok, UnknownKey, "kid_unknown")


def test_entries_are_dropped_at_exp(es256: SigningKey) -> None:
    clock = FakeClock(NOW)
    source = CountingKeySource(es256)
    v = verifier(source, clock=clock, cache_size=100)  # leeway 30
    tok = token(es256)  # exp = NOW + 120
    v.verify(tok)
    assert v.cache is not None and len(v.cache) == 1
    clock.now = NOW + 119
    v.verify(tok)
    assert source.signature_checks == 1
    clock.now = NOW + 120
    assert v.cache.get(tok) is None  # at exp the entry is gone...
    assert len(v.cache) == 0
    v.verify(tok)  # ...so the token is verified again (still within the leeway)
    assert source.signature_checks == 2
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
    checks = source.signature_checks
    v.verify(long_lived)
    v.verify(newcomer)
    assert source.signature_checks == checks
    # When nothing has expired, the oldest entry goes first.
    many = [token(es256, payload=claims(txn=f"m{i}", exp=NOW + 300)) for i in range(5)]
    for tok in many:
        v.verify(tok)
    assert len(v.cache) == 3
    checks = source.signature_checks
    v.verify(many[-1])
    assert source.signature_checks == checks  # the newest is cached
    v.verify(many[0])
    assert source.signature_checks == checks + 1  # the oldest was evicted


def test_cache_size_zero_turns_it_off(es256: SigningKey) -> None:
    source = CountingKeySource(es256)
    v = verifier(source, cache_size=0)
    assert v.cache is None
    tok = token(es256)
    for _ in range(3):
        v.verify(tok)
    assert source.signature_checks == 3


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
