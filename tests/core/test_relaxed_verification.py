"""Valid JWTs other JOSE stacks make and accept (RFC 7519), which the verifier refused before issue 10: ``aud`` as an
array of the one trust domain, non-integer NumericDates, and no ``kid`` when the key choice is unambiguous."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from txtoken import JwksFileKeySource, KeySet, SigningKey, StaticKeySource
from txtoken.errors import ClaimInvalid, SignatureInvalid, TokenExpired, TokenMalformed, TokenNotYetValid, UnknownKey
from txtoken.jws import parse_jws
from txtoken.service.keystore import KeyStore, KeyStoreKeySource

from ..conftest import RunningServer
from .conftest import NOW, TRUST_DOMAIN, FakeClock, claims, header, raises_exactly, rejected, sign, token, verifier
from .test_keysource import _endpoint, _remote

# --- aud ------------------------------------------------------------------------------------------------------------


def test_aud_as_a_one_member_array_of_the_trust_domain_is_accepted(es256: SigningKey) -> None:
    """issue 10: aud as a one-member array was refused (RFC 7519 §4.1.3 allows an array)."""
    verified = verifier(es256).verify(token(es256, payload=claims(aud=[TRUST_DOMAIN])))
    assert verified.claims.aud == TRUST_DOMAIN


# --- NumericDate ----------------------------------------------------------------------------------------------------


def test_non_integer_numeric_dates_are_accepted(es256: SigningKey) -> None:
    """issue 10: non-integer NumericDates (exp: 1795849041.5) were refused (RFC 7519 §2 allows them)."""
    payload = claims(iat=NOW - 0.25, exp=NOW + 119.5, nbf=NOW - 0.75)
    verified = verifier(es256).verify(token(es256, payload=payload))
    assert (verified.claims.iat, verified.claims.exp) == (NOW - 0.25, NOW + 119.5)
    assert verified.expires_at == NOW + 119


def test_non_integer_numeric_dates_are_compared_exactly(es256: SigningKey) -> None:
    v = verifier(es256, leeway=0)
    rejected(v, token(es256, payload=claims(iat=NOW - 100, exp=NOW - 0.5)), TokenExpired, "token_expired")
    rejected(v, token(es256, payload=claims(iat=NOW + 0.5)), TokenNotYetValid, "token_not_yet_valid")
    rejected(v, token(es256, payload=claims(nbf=NOW + 0.5)), TokenNotYetValid, "token_not_yet_valid")
    assert v.verify(token(es256, payload=claims(iat=NOW - 100, exp=NOW + 0.5))).claims.exp == NOW + 0.5


@pytest.mark.parametrize("name", ["iat", "exp", "nbf"])
@pytest.mark.parametrize("value", ["1e400", "-1e400", "true", "false", '"1800000000"', "[1800000000]"])
def test_numeric_dates_that_are_not_finite_numbers_are_refused(es256: SigningKey, name: str, value: str) -> None:
    """``1e400`` parses as infinity in Python's JSON parsers; NaN is no JSON at all (refused as malformed)."""
    payload = json.dumps({**claims(), name: 0}).replace(f'"{name}": 0', f'"{name}": {value}')
    assert value in payload
    rejected(verifier(es256), token(es256, payload=payload), ClaimInvalid, "claim_invalid")


def test_nan_is_not_a_numeric_date(es256: SigningKey) -> None:
    payload = json.dumps(claims(exp=0)).replace('"exp": 0', '"exp": NaN')
    rejected(verifier(es256), token(es256, payload=payload), TokenMalformed, "token_malformed")


# --- no kid ---------------------------------------------------------------------------------------------------------


def _no_kid(key: SigningKey, **changes: Any) -> str:
    return token(key, hdr=header(key, drop=["kid"]), payload=claims(**changes))


def test_token_without_kid_is_accepted_when_one_key_serves_its_alg(signing_keys: dict[str, SigningKey]) -> None:
    """issue 10: a token without kid was refused even when the key source holds exactly one key for its alg."""
    es, ed, rs = signing_keys["ES256"], signing_keys["Ed25519"], signing_keys["RS256"]
    v = verifier(StaticKeySource([es.verification_key, ed.verification_key, rs.verification_key]))
    assert v.verify(_no_kid(es)).kid == es.kid
    assert v.verify(_no_kid(ed)).kid == ed.kid
    assert v.verify(token(ed, hdr={"alg": "EdDSA", "typ": "txntoken+jwt"}, alg="EdDSA")).kid == ed.kid
    assert v.verify(_no_kid(rs)).kid == rs.kid
    # The key is the one for the alg, so a token signed by anyone else fails on its signature.
    rejected(v, _no_kid(SigningKey.generate("ES256")), SignatureInvalid, "signature_invalid")
    rejected(v, token(rs, hdr={"alg": "PS256", "typ": "txntoken+jwt"}, alg="PS256"), UnknownKey, "kid_unknown")


def test_token_without_kid_is_refused_when_the_key_is_ambiguous(es256: SigningKey, clock: FakeClock) -> None:
    second = SigningKey.generate("ES256")
    rejected(verifier([es256.verification_key, second.verification_key]), _no_kid(es256), UnknownKey, "kid_unknown")
    # A rotation's overlap publishes two keys of one alg: ambiguous until the old key retires.
    rotated = KeySet(es256).rotate(second, overlap=60, now=NOW)
    v = verifier(rotated, clock=clock)
    rejected(v, _no_kid(second), UnknownKey, "kid_unknown")
    assert v.verify(token(second)).kid == second.kid  # with its kid: fine
    clock.advance(61)
    assert v.verify(_no_kid(second, iat=clock.now, exp=clock.now + 60)).kid == second.kid


@pytest.mark.anyio
async def test_token_without_kid_async(es256: SigningKey) -> None:
    assert (await verifier(es256).averify(_no_kid(es256))).kid == es256.kid


@pytest.mark.parametrize("kid", ["", None, 7])
def test_a_kid_that_is_present_must_be_a_non_empty_string(es256: SigningKey, kid: object) -> None:
    rejected(verifier(es256), token(es256, hdr=header(es256, kid=kid)), TokenMalformed, "token_malformed")


def test_every_key_source_names_its_sole_key(
    es256: SigningKey, tmp_path: Path, serve: Callable[..., RunningServer]
) -> None:
    second = SigningKey.generate("ES256")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [es256.verification_key.to_jwk()]}))
    file_source = JwksFileKeySource(path)
    assert (file_source.sole_kid("ES256"), file_source.sole_kid("RS256")) == (es256.kid, None)
    path.write_text(json.dumps(KeySet(es256).rotate(second, overlap=60).public_jwks()))
    assert JwksFileKeySource(path).sole_kid("ES256") is None

    _, server = _endpoint(serve, es256)
    remote = _remote(server, FakeClock(0))
    assert remote.sole_kid("ES256") is None  # nothing fetched yet
    assert remote.fetch_key(es256.kid) == es256.verification_key
    assert remote.sole_kid("ES256") == es256.kid
    assert verifier(remote).verify(_no_kid(es256)).kid == es256.kid

    KeySet(es256).save(tmp_path / "keys" / "keys.json")
    store_source = KeyStoreKeySource(KeyStore(tmp_path / "keys", create=False, algorithm="ES256"))
    assert store_source.sole_kid("ES256") == es256.kid


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_token_without_kid_makes_a_remote_source_fetch_within_its_throttle(
    es256: SigningKey, serve: Callable[..., RunningServer], mode: str
) -> None:
    """The first token a verifier sees may have no kid: the remote source fetches then; while the choice stays
    ambiguous, further tokens without kid refresh only as its refresh bucket allows (here one per 10 s)."""
    endpoint, server = _endpoint(serve, es256)
    mono = FakeClock(0)
    v = verifier(_remote(server, mono, refresh_burst=1))

    async def check(tok: str) -> str:
        return (v.verify(tok) if mode == "sync" else await v.averify(tok)).kid

    assert await check(_no_kid(es256)) == es256.kid
    assert endpoint.requests == 1
    endpoint.document = KeySet(es256).rotate(SigningKey.generate("ES256"), overlap=60).public_jwks()
    mono.advance(60)  # the TTL is over: the next lookup refetches, and finds two ES256 keys
    assert await check(token(es256)) == es256.kid
    assert endpoint.requests == 2
    for _ in range(20):
        with pytest.raises(UnknownKey):
            await check(_no_kid(es256))
    assert endpoint.requests == 3  # the bucket's one refresh, then none
    mono.advance(10)
    with pytest.raises(UnknownKey):
        await check(_no_kid(es256))
    assert endpoint.requests == 4


def test_signed_elsewhere_without_kid_and_with_every_relaxation(es256: SigningKey) -> None:
    """The three shapes together, as another JOSE stack may produce them."""
    payload = claims(aud=[TRUST_DOMAIN], iat=NOW + 0.5, exp=NOW + 60.5)
    verified = verifier(es256).verify(sign({"alg": "ES256", "typ": "txntoken+jwt"}, payload, es256))
    assert (verified.kid, verified.claims.aud, verified.claims.exp) == (es256.kid, TRUST_DOMAIN, NOW + 60.5)


def test_parse_jws_requires_a_kid_unless_its_caller_picks_the_key(es256: SigningKey) -> None:
    """Only callers that choose the key themselves (the Txn-Token verifier, the TTS's JWT checks) accept no kid."""
    tok = _no_kid(es256)
    raises_exactly(TokenMalformed, "token_malformed", lambda: parse_jws(tok, algorithms=frozenset({"ES256"})))
    assert parse_jws(tok, algorithms=frozenset({"ES256"}), require_kid=False).header.kid == ""
