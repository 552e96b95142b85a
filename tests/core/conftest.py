"""Shared helpers for the core tests: keys, a fake clock, and a signer for arbitrary (even malformed) JWS.

The signer works on raw JSON text, so tests can sign headers and payloads a JSON library would never produce
(duplicate members, legacy claims, wrong types) with the real key: the verifier must then refuse them for what they
are, not for a bad signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from txtoken import KeySet, SigningKey, TxnTokenVerifier, VerificationKey
from txtoken.errors import TxTokenError
from txtoken.keys import Algorithm
from txtoken.keysource import KeySource

#: A fixed "now" (2027-01-15) for every test that does not need the wall clock.
NOW = 1_800_000_000
TRUST_DOMAIN = "td.example"
ALL_ALGS: tuple[Algorithm, ...] = ("ES256", "Ed25519", "EdDSA", "RS256", "PS256")
REQUIRED = ("iat", "aud", "exp", "txn", "sub", "scope", "req_wl")

Json = Mapping[str, Any] | str | bytes
_HMAC = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
E = TypeVar("E", bound=TxTokenError)


class FakeClock:
    """A clock the test moves by hand; usable as both a wall clock and a monotonic clock."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_bytes(value: Json) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def raw_signature(alg: str, key: SigningKey | bytes, signing_input: bytes) -> bytes:
    """A JWS signature computed independently of txtoken (HS*: ``key`` is the secret bytes)."""
    if alg in _HMAC:
        assert isinstance(key, bytes)
        return hmac.new(key, signing_input, _HMAC[alg]).digest()
    assert isinstance(key, SigningKey)
    private = key.private_key
    if alg == "ES256":
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg in ("Ed25519", "EdDSA"):
        assert isinstance(private, ed25519.Ed25519PrivateKey)
        return private.sign(signing_input)
    assert isinstance(private, rsa.RSAPrivateKey)
    if alg == "RS256":
        return private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    if alg == "PS256":
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return private.sign(signing_input, pss, hashes.SHA256())
    raise AssertionError(f"no test signer for {alg}")


def sign_segments(header_segment: str, payload_segment: str, key: SigningKey, *, alg: str | None = None) -> str:
    """A compact JWS whose first two segments are exactly these strings (even if they are not valid base64url)."""
    signing_input = f"{header_segment}.{payload_segment}"
    return f"{signing_input}.{b64url(raw_signature(alg or key.alg, key, signing_input.encode('ascii')))}"


def sign(header: Json, payload: Json, key: SigningKey | bytes, *, alg: str | None = None) -> str:
    """A compact JWS over exactly these header and payload JSON texts.

    ``alg`` picks the signature algorithm; by default the header's ``alg`` (when the header is a mapping) or the
    key's own algorithm.
    """
    if alg is None:
        if isinstance(header, Mapping) and isinstance(header.get("alg"), str):
            alg = header["alg"]
        else:
            assert isinstance(key, SigningKey)
            alg = key.alg
    assert alg is not None
    signing_input = f"{b64url(_json_bytes(header))}.{b64url(_json_bytes(payload))}"
    signature = raw_signature(alg, key, signing_input.encode("ascii"))
    return f"{signing_input}.{b64url(signature)}"


def claims(*, drop: Iterable[str] = (), **overrides: Any) -> dict[str, Any]:
    """A valid Txn-Token claim set issued at :data:`NOW` (lifetime 120 s), with overrides, without ``drop``."""
    data: dict[str, Any] = {
        "iat": NOW,
        "exp": NOW + 120,
        "aud": TRUST_DOMAIN,
        "txn": "97053963-771d-49cc-a4e3-20aad399c312",
        "sub": "user-42",
        "scope": "trade.stocks",
        "req_wl": "spiffe://td.example/gateway",
        "tctx": {"action": "BUY", "ticker": "MSFT", "quantity": 100},
        "rctx": {"req_ip": "192.0.2.7", "authn": "face"},
    }
    data.update(overrides)
    for name in drop:
        data.pop(name)
    return data


def header(key: SigningKey, *, drop: Iterable[str] = (), **overrides: Any) -> dict[str, Any]:
    """The header txtoken mints (``alg``, ``typ``, ``kid``), with overrides and without the ``drop`` members."""
    data: dict[str, Any] = {"alg": key.alg, "typ": "txntoken+jwt", "kid": key.kid}
    data.update(overrides)
    for name in drop:
        data.pop(name)
    return data


def token(key: SigningKey, *, hdr: Json | None = None, payload: Json | None = None, alg: str | None = None) -> str:
    """A Txn-Token signed with ``key``: the default header and claims unless given."""
    return sign(header(key) if hdr is None else hdr, claims() if payload is None else payload, key, alg=alg)


def verifier(
    keys: KeySource | KeySet | Iterable[VerificationKey] | SigningKey,
    *,
    clock: Callable[[], float] | None = None,
    **options: Any,
) -> TxnTokenVerifier:
    """A verifier for :data:`TRUST_DOMAIN` at :data:`NOW` (fake clock), without the verified-token cache by default."""
    if isinstance(keys, SigningKey):
        keys = [keys.verification_key]
    options.setdefault("cache_size", 0)
    return TxnTokenVerifier(keys, trust_domain=TRUST_DOMAIN, clock=clock or FakeClock(), **options)


def raises_exactly(exc_type: type[E], code: str, call: Callable[[], object]) -> E:
    """Run ``call``; it must raise exactly ``exc_type`` (not a subclass or a parent) with the stable ``code``."""
    with pytest.raises(TxTokenError) as info:
        call()
    error = info.value
    assert type(error) is exc_type, f"raised {type(error).__name__} ({error}), expected {exc_type.__name__}"
    assert error.code == code
    return error


def rejected(v: TxnTokenVerifier, tok: str, exc_type: type[E], code: str) -> E:
    """``v.verify(tok)`` must be refused with exactly ``exc_type`` and ``code``."""
    return raises_exactly(exc_type, code, lambda: v.verify(tok))


@pytest.fixture(scope="session")
def signing_keys() -> dict[str, SigningKey]:
    """One freshly generated key per supported algorithm (generated once per test session)."""
    return {alg: SigningKey.generate(alg) for alg in ALL_ALGS}


@pytest.fixture
def es256(signing_keys: dict[str, SigningKey]) -> SigningKey:
    return signing_keys["ES256"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
