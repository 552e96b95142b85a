"""Interoperability with an independent JOSE implementation, joserfc, in both directions, for every algorithm."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, KeySet as JoseKeySet, OKPKey, RSAKey

from txtoken import KeySet, SigningKey, TxnTokenMinter, load_jwks
from txtoken.errors import TypMismatch, UnknownKey

from .conftest import ALL_ALGS, NOW, TRUST_DOMAIN, claims, rejected, verifier


@contextlib.contextmanager
def _joserfc_alg_warnings(alg: str) -> Iterator[None]:
    """joserfc flags the pre-RFC 9864 name ``EdDSA`` with a SecurityWarning; expect exactly that, nothing else."""
    if alg == "EdDSA":
        with pytest.warns(SecurityWarning, match="EdDSA"):
            yield
    else:
        yield


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_txtoken_token_verifies_with_joserfc_using_the_exported_jwks(
    signing_keys: dict[str, SigningKey], alg: str
) -> None:
    keys = KeySet(SigningKey.generate("ES256")).rotate(signing_keys[alg], overlap=600)  # two keys published
    tok = TxnTokenMinter(keys, trust_domain=TRUST_DOMAIN).mint(
        sub="user-42", scope="trade.stocks", req_wl="gateway", tctx={"ticker": "MSFT"}
    )
    jwks = JoseKeySet.import_key_set(keys.public_jwks())  # type: ignore[arg-type]
    with _joserfc_alg_warnings(alg):
        decoded = jwt.decode(tok, jwks, algorithms=[alg])
    assert decoded.header == {"alg": alg, "typ": "txntoken+jwt", "kid": signing_keys[alg].kid}
    now = int(time.time())
    jwt.JWTClaimsRegistry(
        now=now,
        leeway=5,
        aud={"essential": True, "value": TRUST_DOMAIN},
        iat={"essential": True},
        exp={"essential": True},
        txn={"essential": True},
        sub={"essential": True, "value": "user-42"},
        scope={"essential": True},
        req_wl={"essential": True},
    ).validate(decoded.claims)
    assert decoded.claims["tctx"] == {"ticker": "MSFT"}


def _joserfc_key(alg: str) -> ECKey | OKPKey | RSAKey:
    if alg == "ES256":
        return ECKey.generate_key("P-256")
    if alg in ("Ed25519", "EdDSA"):
        return OKPKey.generate_key("Ed25519")
    return RSAKey.generate_key(2048)


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_joserfc_token_verifies_with_txtoken(alg: str) -> None:
    key = _joserfc_key(alg)
    kid = key.thumbprint()
    public: dict[str, Any] = {**key.as_dict(private=False), "alg": alg, "use": "sig"}
    header = {"alg": alg, "typ": "txntoken+jwt", "kid": kid}
    with _joserfc_alg_warnings(alg):
        tok = jwt.encode(header, claims(), key, algorithms=[alg])
    # The JWK carries no kid: txtoken computes its RFC 7638 thumbprint, which must equal joserfc's.
    verification_keys = load_jwks({"keys": [public]})
    assert [k.kid for k in verification_keys] == [kid]
    verified = verifier(verification_keys).verify(tok)
    assert verified.kid == kid
    assert verified.claims.to_dict() == claims()
    assert verified.token == tok


def test_joserfc_token_with_its_default_typ_is_refused() -> None:
    """A plain JWT (joserfc's default ``typ: JWT``) with otherwise perfect Txn-Token claims is not a Txn-Token."""
    key = ECKey.generate_key("P-256")
    tok = jwt.encode({"alg": "ES256", "kid": key.thumbprint()}, claims(), key)
    keys = load_jwks({"keys": [{**key.as_dict(private=False), "alg": "ES256"}]})
    rejected(verifier(keys), tok, TypMismatch, "typ_invalid")


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_joserfc_token_with_aud_array_fractional_dates_and_no_kid_verifies_with_txtoken(alg: str) -> None:
    """issue 10: valid JWTs joserfc makes and accepts were refused: ``aud`` as a one-member array, non-integer
    NumericDates (``exp: 1795849041.5``), no ``kid`` (the key source holds one key for the alg)."""
    key = _joserfc_key(alg)
    other = ECKey.generate_key("P-256") if alg != "ES256" else OKPKey.generate_key("Ed25519")
    payload = claims(aud=[TRUST_DOMAIN], iat=NOW - 0.5, exp=NOW + 119.5, nbf=NOW - 1.25)
    with _joserfc_alg_warnings(alg):
        tok = jwt.encode({"alg": alg, "typ": "txntoken+jwt"}, payload, key, algorithms=[alg])
    # joserfc itself accepts what it made.
    with _joserfc_alg_warnings(alg):
        decoded = jwt.decode(tok, key, algorithms=[alg])
    jwt.JWTClaimsRegistry(now=NOW, aud={"essential": True, "value": TRUST_DOMAIN}).validate(decoded.claims)
    assert "kid" not in decoded.header
    # One key for the token's alg, one for another alg: no ambiguity.
    keys = load_jwks({"keys": [{**key.as_dict(private=False), "alg": alg}, other.as_dict(private=False)]})
    verified = verifier(keys).verify(tok)
    assert verified.kid == key.thumbprint()
    assert (verified.claims.aud, verified.claims.exp, verified.claims.iat) == (TRUST_DOMAIN, NOW + 119.5, NOW - 0.5)


def test_joserfc_token_without_kid_is_refused_when_two_keys_serve_its_alg() -> None:
    one, two = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
    tok = jwt.encode({"alg": "ES256", "typ": "txntoken+jwt"}, claims(), one)
    keys = load_jwks({"keys": [{**k.as_dict(private=False), "alg": "ES256"} for k in (one, two)]})
    rejected(verifier(keys), tok, UnknownKey, "kid_unknown")
