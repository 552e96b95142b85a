"""The key-pair source: RFC 7523 client assertions the workload signs itself."""

from __future__ import annotations

import asyncio

import pytest

from txtoken.credentials import CLIENT_ASSERTION_TYP, KeyPairAssertionSource
from txtoken.errors import ConfigurationError
from txtoken.jws import parse_jws
from txtoken.keys import ALGORITHMS, SigningKey

from .fakes import Clock, claims_of

WORKLOAD = "spiffe://shop.example/orders"
TTS = "https://tts.shop.example"


@pytest.fixture(scope="module")
def workload_key() -> SigningKey:
    return SigningKey.generate("Ed25519")


def test_assertion_claims_and_header(workload_key: SigningKey, clock: Clock) -> None:
    source = KeyPairAssertionSource(workload_key, workload_id=WORKLOAD, audience=TTS, lifetime=60, clock=clock)
    credential = source.get()
    claims = claims_of(credential.value, workload_key)
    assert claims["iss"] == claims["sub"] == WORKLOAD
    assert claims["aud"] == TTS
    assert claims["iat"] == int(clock())
    assert claims["exp"] == claims["iat"] + 60 == credential.expires_at
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    header = parse_jws(credential.value, algorithms=frozenset(ALGORITHMS)).header
    assert (header.typ, header.alg, header.kid) == (CLIENT_ASSERTION_TYP, "Ed25519", workload_key.kid)


@pytest.mark.anyio
async def test_single_use_by_default_each_call_a_new_jti(workload_key: SigningKey) -> None:
    source = KeyPairAssertionSource(workload_key, workload_id=WORKLOAD, audience=TTS)
    tokens = [source.get().value for _ in range(5)] + [
        c.value for c in await asyncio.gather(source.aget(), source.aget())
    ]
    assert len({claims_of(t, workload_key)["jti"] for t in tokens}) == len(tokens)


def test_reusable_assertion_is_cached_until_the_refresh_margin(workload_key: SigningKey, clock: Clock) -> None:
    source = KeyPairAssertionSource(
        workload_key, workload_id=WORKLOAD, audience=TTS, lifetime=120, single_use=False, refresh_margin=30, clock=clock
    )
    first = source.get()
    clock.advance(89)
    assert source.get() == first
    clock.advance(2)
    assert source.get() != first


def test_typ_can_be_chosen_for_older_servers(workload_key: SigningKey) -> None:
    source = KeyPairAssertionSource(workload_key, workload_id=WORKLOAD, audience=TTS, typ="JWT")
    assert parse_jws(source.get().value, algorithms=frozenset(ALGORITHMS)).header.typ == "JWT"


def test_private_key_and_assertion_not_in_repr(workload_key: SigningKey) -> None:
    source = KeyPairAssertionSource(workload_key, workload_id=WORKLOAD, audience=TTS)
    credential = source.get()
    text = repr(source) + repr(credential)
    assert credential.value not in text
    assert workload_key.to_private_jwk()["d"] not in text


@pytest.mark.parametrize(
    ("workload_id", "audience", "lifetime"),
    [("", TTS, 60), (WORKLOAD, "", 60), (WORKLOAD, TTS, 0), (WORKLOAD, TTS, 301)],
)
def test_bad_configuration_is_refused(workload_key: SigningKey, workload_id: str, audience: str, lifetime: int) -> None:
    with pytest.raises(ConfigurationError):
        KeyPairAssertionSource(workload_key, workload_id=workload_id, audience=audience, lifetime=lifetime)
