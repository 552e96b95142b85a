"""The TTS's cache of verified JWTs (subject tokens, platform credentials): what a hit may skip and what it may not."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from txtoken.errors import SignatureInvalid, TokenExpired
from txtoken.keys import SigningKey, VerificationKey
from txtoken.keysource import StaticKeySource
from txtoken.mint import encode_jws
from txtoken.service.jwtcheck import JwtRules, VerifiedJwtCache, verify_jwt

from .conftest import GATEWAY, Tts, assertion

RULES = JwtRules(frozenset({"at+jwt"}), frozenset({"https://api.example"}), ("iss", "sub", "aud", "exp"))
ALGORITHMS = frozenset({"ES256"})


def _token(key: SigningKey, *, exp_in: int = 300, **changes: Any) -> str:
    now = int(time.time())
    claims = {"iss": "https://idp.example", "sub": "alice", "aud": "https://api.example", "iat": now}
    claims.update(exp=now + exp_in, **changes)
    return encode_jws(claims, key, typ="at+jwt")


def _verify(token: str, source: StaticKeySource, cache: VerifiedJwtCache, now: float | None = None) -> dict[str, Any]:
    return asyncio.run(
        verify_jwt(
            token, keys=source, algorithms=ALGORITHMS, rules=RULES, now=time.time() if now is None else now, cache=cache
        )
    )


def test_a_verified_token_is_kept_and_served_again() -> None:
    key = SigningKey.generate()
    source, cache = StaticKeySource([key.verification_key]), VerifiedJwtCache()
    token = _token(key)
    first = _verify(token, source, cache)
    assert len(cache) == 1
    second = _verify(token, source, cache)
    assert second == first and second is not first  # a copy: a caller cannot change the cached claims
    second["sub"] = "mallory"
    assert _verify(token, source, cache)["sub"] == "alice"


def test_the_same_payload_with_another_signature_is_no_hit() -> None:
    key = SigningKey.generate()
    source, cache = StaticKeySource([key.verification_key]), VerifiedJwtCache()
    token = _token(key)
    _verify(token, source, cache)
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    with pytest.raises(SignatureInvalid):
        _verify(forged, source, cache)


def test_claims_are_checked_at_every_use() -> None:
    key = SigningKey.generate()
    source, cache = StaticKeySource([key.verification_key]), VerifiedJwtCache()
    token = _token(key, exp_in=60)
    _verify(token, source, cache)
    with pytest.raises(TokenExpired):
        _verify(token, source, cache, now=time.time() + 61)
    assert len(cache) == 0  # dropped at its exp


def test_a_key_no_longer_served_for_the_kid_ends_the_entry() -> None:
    """An issuer that replaced the key behind a kid: the cached token is checked against the new key, and fails."""
    key, other = SigningKey.generate(), SigningKey.generate()
    cache = VerifiedJwtCache()
    token = _token(key)
    _verify(token, StaticKeySource([key.verification_key]), cache)
    impostor = VerificationKey.from_public_key(other.verification_key.public_key, "ES256", kid=key.kid)
    with pytest.raises(SignatureInvalid):
        _verify(token, StaticKeySource([impostor]), cache)


def test_bounded_expired_entries_go_first_then_the_oldest() -> None:
    key = SigningKey.generate()
    source, cache = StaticKeySource([key.verification_key]), VerifiedJwtCache(max_entries=2)
    now = time.time()
    short, long, newest = _token(key, exp_in=10), _token(key, jti="a"), _token(key, jti="b")
    _verify(short, source, cache)
    _verify(long, source, cache)
    _verify(newest, source, cache, now=now + 11)  # `short` has expired: it goes, `long` stays
    assert len(cache) == 2
    _verify(_token(key, jti="c"), source, cache)  # full of live entries: the oldest (`long`) goes
    assert len(cache) == 2


def test_the_tts_caches_subject_tokens_but_never_key_pair_assertions(tts: Tts) -> None:
    registry = tts.service.exchange._authn._issuers
    subject = tts.platform.access_token(sub="carol")
    caches = [issuer.cache for issuer in registry._issuers.values()]
    before = sum(len(c) for c in caches if c is not None)
    tts.issue(subject_token=subject)
    tts.issue(subject_token=subject)  # the second request is served from the cache
    assert sum(len(c) for c in caches if c is not None) == before + 1
    # a key-pair assertion, even when valid, never enters any cache (its jti must be single-use)
    token = assertion(tts.keys.gateway, GATEWAY)
    tts.issue(client_assertion=token, subject_token=subject)
    assert sum(len(c) for c in caches if c is not None) == before + 1


def test_the_cache_can_be_turned_off(start_tts: Any) -> None:
    tts = start_tts(lambda data: data.update(verified_token_cache=0))
    registry = tts.service.exchange._authn._issuers
    assert all(issuer.cache is None for issuer in registry._issuers.values())
    subject = tts.platform.access_token()
    tts.issue(subject_token=subject)
    tts.issue(subject_token=subject)


def test_invalid_client_is_never_served_from_a_subject_cache_entry(tts: Tts) -> None:
    """A subject token (audience: the API) cached by the TTS cannot become a client assertion (audience: the TTS)."""
    subject = tts.platform.access_token(sub="dave")
    tts.issue(subject_token=subject)
    response = tts.post(tts.form(subject_token=tts.platform.access_token(), client_assertion=subject))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
