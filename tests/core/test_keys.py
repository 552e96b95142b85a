"""Signing and verification keys: generation, PEM / JWK / JWKS loading, RFC 7638 ``kid``, rotation, safe export."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from txtoken import KeySet, SigningKey, TxnTokenMinter, TxnTokenVerifier, VerificationKey, load_jwks
from txtoken.errors import ConfigurationError, UnknownKey
from txtoken.keys import key_index, thumbprint

from .conftest import ALL_ALGS, NOW, TRUST_DOMAIN, FakeClock, raises_exactly, rejected, token, verifier

#: RFC 7638 §3.1: the example RSA key (RFC 7517 §A.1) and its published SHA-256 thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknj"
        "hMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qM"
        "QvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJz"
        "KnqDKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k", "r", "t"})
PUBLIC_MEMBERS = frozenset({"kty", "crv", "x", "y", "n", "e", "kid", "alg", "use"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _independent_thumbprint(key: SigningKey) -> str:
    """RFC 7638 §3, from the public numbers, with the required members in lexicographic order and no whitespace."""
    public = key.private_key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        numbers = public.public_numbers()
        x, y = _b64(numbers.x.to_bytes(32, "big")), _b64(numbers.y.to_bytes(32, "big"))
        canonical = f'{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}'
    elif isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        canonical = f'{{"crv":"Ed25519","kty":"OKP","x":"{_b64(raw)}"}}'
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        numbers_rsa = public.public_numbers()
        n = numbers_rsa.n.to_bytes((numbers_rsa.n.bit_length() + 7) // 8, "big")
        e = numbers_rsa.e.to_bytes((numbers_rsa.e.bit_length() + 7) // 8, "big")
        canonical = f'{{"e":"{_b64(e)}","kty":"RSA","n":"{_b64(n)}"}}'
    return _b64(hashlib.sha256(canonical.encode()).digest())


def _members(value: Any) -> Iterator[str]:
    """Every member name at any depth of a JSON value."""
    if isinstance(value, dict):
        for name, inner in value.items():
            yield name
            yield from _members(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _members(inner)


def _private_values(key: SigningKey) -> list[str]:
    jwk = key.to_private_jwk()
    return [jwk[m] for m in PRIVATE_MEMBERS if isinstance(jwk.get(m), str)]


def _polluted(key: SigningKey) -> dict[str, Any]:
    """The private JWK plus other private-looking members (``oth`` only where the loader tolerates it)."""
    jwk = {**key.to_private_jwk(), "k": "c2VjcmV0"}
    if jwk["kty"] != "RSA":  # an RSA "oth" means a multi-prime key, which is refused outright
        jwk["oth"] = [{"r": "AQAB", "d": "AQAB", "t": "AQAB"}]
    return jwk


# --- generation and kid ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_generate_binds_the_algorithm_and_the_rfc7638_kid(signing_keys: dict[str, SigningKey], alg: str) -> None:
    key = signing_keys[alg]
    assert key.alg == alg
    private = key.private_key
    if alg == "ES256":
        assert isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1)
    elif alg in ("Ed25519", "EdDSA"):
        assert isinstance(private, ed25519.Ed25519PrivateKey)
    else:
        assert isinstance(private, rsa.RSAPrivateKey) and private.key_size >= 2048
    assert key.kid == _independent_thumbprint(key)
    assert key.verification_key.kid == key.kid and key.verification_key.alg == alg
    assert key.verification_key.to_jwk()["kid"] == key.kid


def test_generated_keys_are_distinct() -> None:
    assert SigningKey.generate().kid != SigningKey.generate().kid
    assert SigningKey.generate().alg == "ES256"  # the default


def test_rfc7638_example_thumbprint() -> None:
    assert thumbprint(RFC7638_JWK) == RFC7638_THUMBPRINT
    without_kid = {k: v for k, v in RFC7638_JWK.items() if k != "kid"}
    imported = VerificationKey.from_jwk(without_kid)
    assert imported.kid == RFC7638_THUMBPRINT
    assert imported.alg == "RS256"
    # A kid given in the JWK is kept as published.
    assert VerificationKey.from_jwk(RFC7638_JWK).kid == "2011-04-29"
    # Member order and extra members do not matter (RFC 7638 §3.2, §3.3).
    shuffled = {"e": "AQAB", "use": "sig", "n": RFC7638_JWK["n"], "kty": "RSA"}
    assert thumbprint(shuffled) == RFC7638_THUMBPRINT


def test_thumbprint_needs_the_required_members() -> None:
    raises_exactly(ConfigurationError, "configuration_error", lambda: thumbprint({"kty": "RSA", "e": "AQAB"}))
    raises_exactly(ConfigurationError, "configuration_error", lambda: thumbprint({"n": "x"}))


# --- loading: PEM, JWK, JWKS ----------------------------------------------------------------------------------------


_INFERRED = {"ES256": "ES256", "Ed25519": "Ed25519", "EdDSA": "Ed25519", "RS256": "RS256", "PS256": "RS256"}


def _same_key(a: SigningKey, b: SigningKey) -> None:
    """``b`` signs tokens that ``a``'s public key verifies, under the same kid."""
    assert b.kid == a.kid
    assert verifier(a).verify(token(b)).kid == a.kid


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_pem_round_trip(signing_keys: dict[str, SigningKey], alg: str) -> None:
    key = signing_keys[alg]
    pem = key.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = SigningKey.from_pem(pem, alg=alg)
    assert loaded.alg == alg
    _same_key(key, loaded)
    assert SigningKey.from_pem(pem.decode()).alg == _INFERRED[alg]  # str PEM, algorithm inferred from the key


def test_encrypted_pem_and_bad_pem(es256: SigningKey) -> None:
    encrypted = es256.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"correct horse"),
    )
    _same_key(es256, SigningKey.from_pem(encrypted, password=b"correct horse"))
    public_pem = es256.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for call in (
        lambda: SigningKey.from_pem(encrypted, password=b"wrong"),
        lambda: SigningKey.from_pem(encrypted),
        lambda: SigningKey.from_pem(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"),
        lambda: SigningKey.from_pem(public_pem),
        lambda: SigningKey.from_pem(es256.to_pem(), alg="RS256"),
    ):
        raises_exactly(ConfigurationError, "configuration_error", call)


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_jwk_round_trip(signing_keys: dict[str, SigningKey], alg: str) -> None:
    key = signing_keys[alg]
    jwk = key.to_private_jwk()
    assert jwk["kid"] == key.kid and jwk["alg"] == alg and "d" in jwk
    loaded = SigningKey.from_jwk(json.loads(json.dumps(jwk)))
    assert loaded.alg == alg
    _same_key(key, loaded)
    public = VerificationKey.from_jwk(key.verification_key.to_jwk())
    assert public == key.verification_key


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_jwks_file_round_trip_and_mode_0600(signing_keys: dict[str, SigningKey], alg: str, tmp_path: Path) -> None:
    previous = SigningKey.generate("ES256")
    keys = KeySet(previous).rotate(signing_keys[alg], overlap=600, now=NOW)
    path = tmp_path / "keys" / "txtoken-keys.json"
    keys.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["txtoken-keys.json"]  # no temporary file left behind
    loaded = KeySet.load(path)
    assert loaded.active.kid == signing_keys[alg].kid and loaded.active.alg == alg
    assert [(p.key.kid, p.retire_at) for p in loaded.previous] == [(previous.kid, NOW + 600)]
    _same_key(signing_keys[alg], loaded.active)
    assert loaded.public_jwks(now=NOW) == keys.public_jwks(now=NOW)


def test_save_tightens_an_existing_file_to_0600(es256: SigningKey, tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("{}")
    path.chmod(0o644)
    KeySet(es256).save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KeySet.load(path).active.kid == es256.kid


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_key_set_loads_a_pem_or_a_single_jwk_file(
    signing_keys: dict[str, SigningKey], alg: str, tmp_path: Path
) -> None:
    key = signing_keys[alg]
    pem, jwk = tmp_path / "key.pem", tmp_path / "key.jwk"
    pem.write_bytes(key.to_pem())
    jwk.write_text(json.dumps(key.to_private_jwk()))
    assert KeySet.load(pem).active.alg == _INFERRED[alg]
    assert KeySet.load(pem).active.kid == key.kid
    assert KeySet.load(jwk).active.alg == alg


def test_key_set_files_that_are_not_key_sets(tmp_path: Path, es256: SigningKey) -> None:
    cases = {
        "text": "not json",
        "list": "[]",
        "empty": '{"keys": []}',
        "public": json.dumps(KeySet(es256).public_jwks()),
        "bad-retire": json.dumps(
            {"keys": [es256.to_private_jwk(), {**es256.verification_key.to_jwk(), "retire_at": "soon"}]}
        ),
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        raises_exactly(ConfigurationError, "configuration_error", lambda path=path: KeySet.load(path))  # type: ignore[misc]


def test_load_jwks_takes_only_usable_signature_keys(signing_keys: dict[str, SigningKey]) -> None:
    es, ed = signing_keys["ES256"], signing_keys["Ed25519"]
    document = {
        "keys": [
            es.verification_key.to_jwk(),
            ed.verification_key.to_jwk(),
            {**SigningKey.generate().verification_key.to_jwk(), "use": "enc"},
            {**SigningKey.generate().verification_key.to_jwk(), "alg": "ES384"},
            {"kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "kid": "hmac"},
            {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA", "kid": "broken"},
            "not a jwk",
        ]
    }
    for data in (document, json.dumps(document), json.dumps(document).encode()):
        assert [k.kid for k in load_jwks(data)] == [es.kid, ed.kid]
    for bad in ("{", "[]", {"keys": "x"}, {}):
        raises_exactly(ConfigurationError, "configuration_error", lambda bad=bad: load_jwks(bad))  # type: ignore[misc]


def test_weak_or_mismatched_keys_are_refused() -> None:
    small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point of the test
    p384 = ec.generate_private_key(ec.SECP384R1())
    for call in (
        lambda: SigningKey("RS256", small_rsa),
        lambda: SigningKey("ES256", p384),
        lambda: SigningKey("ES256", ed25519.Ed25519PrivateKey.generate()),
        lambda: SigningKey.generate("HS256"),  # type: ignore[arg-type]
        lambda: VerificationKey.from_public_key(small_rsa.public_key()),
        lambda: VerificationKey.from_jwk({**SigningKey.generate().verification_key.to_jwk(), "alg": "RS256"}),
        lambda: VerificationKey.from_jwk({"kty": "oct", "k": "c2VjcmV0"}),
    ):
        raises_exactly(ConfigurationError, "configuration_error", call)


def test_key_index_refuses_two_keys_under_one_kid(signing_keys: dict[str, SigningKey]) -> None:
    es = signing_keys["ES256"].verification_key
    impostor = VerificationKey(es.kid, "ES256", SigningKey.generate().private_key.public_key())
    assert key_index([es, es]) == {es.kid: es}
    raises_exactly(ConfigurationError, "configuration_error", lambda: key_index([es, impostor]))


# --- rotation with overlap --------------------------------------------------------------------------------------


def test_rotation_with_overlap(es256: SigningKey) -> None:
    """Old-key tokens verify against the published keys until the old key's ``retire_at``, then not."""
    old_keys = KeySet(es256)
    old_token = TxnTokenMinter(old_keys, trust_domain=TRUST_DOMAIN, clock=FakeClock(NOW - 10)).mint(
        sub="u", scope="s", req_wl="w"
    )  # valid until NOW + 290
    new_key = SigningKey.generate()
    rotated = old_keys.rotate(new_key, overlap=100, now=NOW)
    assert rotated.active is new_key
    assert [p.retire_at for p in rotated.previous] == [NOW + 100]
    new_token = TxnTokenMinter(rotated, trust_domain=TRUST_DOMAIN, clock=FakeClock(NOW)).mint(
        sub="u", scope="s", req_wl="w"
    )
    assert verifier(rotated.verification_keys(NOW)).verify(new_token).kid == new_key.kid

    def published_at(t: int) -> list[VerificationKey]:
        return load_jwks(json.dumps(rotated.public_jwks(now=t)))

    assert [k.kid for k in published_at(NOW + 99)] == [new_key.kid, es256.kid]
    assert verifier(published_at(NOW + 99), clock=FakeClock(NOW + 99)).verify(old_token).kid == es256.kid
    assert [k.kid for k in published_at(NOW + 100)] == [new_key.kid]
    rejected(verifier(published_at(NOW + 100), clock=FakeClock(NOW + 100)), old_token, UnknownKey, "kid_unknown")
    assert verifier(published_at(NOW + 100), clock=FakeClock(NOW + 100)).verify(new_token).kid == new_key.kid


def test_rotation_keeps_unretired_keys_and_drops_retired_ones() -> None:
    a, b, c, d = (SigningKey.generate() for _ in range(4))
    keys = KeySet(a).rotate(b, overlap=1000, now=NOW).rotate(c, overlap=1000, now=NOW + 500)
    assert [(p.key.kid, p.retire_at) for p in keys.previous] == [(b.kid, NOW + 1500), (a.kid, NOW + 1000)]
    later = keys.rotate(d, overlap=1000, now=NOW + 1200)  # a retired at NOW + 1000: dropped
    assert [p.key.kid for p in later.previous] == [c.kid, b.kid]
    assert [k.kid for k in later.verification_keys(NOW + 1600)] == [d.kid, c.kid]


def test_a_new_key_is_published_before_it_signs() -> None:
    """issue 10: `keys rotate` made the new key sign at once, so verifiers that had fetched the JWKS shortly before
    refused every new token. A key now enters the JWKS ``prepublish`` seconds before it signs."""
    old, new = SigningKey.generate(), SigningKey.generate()
    keys = KeySet(old).rotate(new, overlap=600, prepublish=300, now=NOW)
    assert keys.pending is not None
    assert (keys.pending.activate_at, keys.pending.retire_previous_at) == (NOW + 300, NOW + 900)

    def signer(t: int) -> str:
        return TxnTokenMinter(keys.at(t), trust_domain=TRUST_DOMAIN, clock=FakeClock(t)).mint(
            sub="u", scope="s", req_wl="w"
        )

    def published(t: int) -> set[str]:
        return {k.kid for k in load_jwks(json.dumps(keys.public_jwks(now=t)))}

    for t in (NOW, NOW + 299):
        assert keys.at(t).active is old and published(t) == {old.kid, new.kid}
        assert verifier(keys.verification_keys(t), clock=FakeClock(t)).verify(signer(t)).kid == old.kid
    for t in (NOW + 300, NOW + 899):
        assert keys.at(t).active is new and published(t) == {old.kid, new.kid}
        assert verifier(keys.verification_keys(t), clock=FakeClock(t)).verify(signer(t)).kid == new.kid
    assert keys.at(NOW + 900).active is new and published(NOW + 900) == {new.kid}
    # Whenever a key signs, it has been published for at least the prepublication time.
    for t in range(NOW, NOW + 1000, 7):
        signing = keys.at(t).active.kid
        earlier = range(max(NOW, t - 300), t + 1, 10)
        assert all(signing in {k.kid for k in keys.verification_keys(e)} for e in earlier)
    assert [keys.next_change(t) for t in (NOW, NOW + 300, NOW + 900)] == [NOW + 300, NOW + 900, None]
    assert all(set(jwk) <= PUBLIC_MEMBERS for jwk in keys.public_jwks(now=NOW)["keys"])  # the pending key's too


def test_a_pending_key_survives_the_key_set_file_and_any_reader_agrees_on_it(tmp_path: Path) -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    KeySet(old).rotate(new, overlap=600, prepublish=300, now=NOW).save(tmp_path / "keys.json")
    data = json.loads((tmp_path / "keys.json").read_text())
    assert [(k["kid"], k.get("activate_at"), k.get("retire_at")) for k in data["keys"]] == [
        (old.kid, None, NOW + 900),
        (new.kid, NOW + 300, None),
    ]
    loaded = KeySet.load(tmp_path / "keys.json")
    assert loaded.at(NOW + 299).active.kid == old.kid and loaded.at(NOW + 300).active.kid == new.kid
    assert loaded.at(NOW + 300).active.private_key.private_numbers() == new.private_key.private_numbers()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ks: ks[0].pop("retire_at"), "retire_at"),
        (lambda ks: ks[0].update(retire_at=NOW + 299), "retire_at"),
        (lambda ks: ks[1].update(activate_at="soon"), "activate_at"),
        (lambda ks: ks.append({**ks[1], "activate_at": NOW + 400}), "at most one"),
        (lambda ks: ks.pop(1), "replaces it"),
    ],
)
def test_a_key_set_file_with_inconsistent_times_is_refused(change: Any, message: str) -> None:
    data = KeySet(SigningKey.generate()).rotate(SigningKey.generate(), overlap=600, prepublish=300, now=NOW)
    document = data.to_private_jwks()
    change(document["keys"])
    with pytest.raises(ConfigurationError, match=message):
        KeySet.from_private_jwks(document)


def test_rotating_again_drops_a_key_that_never_signed() -> None:
    a, b, c = (SigningKey.generate() for _ in range(3))
    pending = KeySet(a).rotate(b, overlap=600, prepublish=300, now=NOW)
    urgent = pending.rotate(c, overlap=0, prepublish=0, now=NOW + 10)  # e.g. a compromised key: switch now
    assert urgent.active is c and urgent.pending is None
    assert [k.kid for k in urgent.verification_keys(NOW + 10)] == [c.kid]
    later = pending.rotate(c, overlap=600, prepublish=300, now=NOW + 500)  # b signs since NOW + 300
    assert later.active is b and later.pending is not None and later.pending.key is c
    assert [p.key.kid for p in later.previous] == [a.kid]


def test_a_prepublication_is_never_shortened_by_a_fraction_of_a_second() -> None:
    keys = KeySet(SigningKey.generate()).rotate(SigningKey.generate(), overlap=60, prepublish=2, now=NOW + 0.9)
    assert keys.pending is not None and keys.pending.activate_at - (NOW + 0.9) >= 2


def test_a_deeply_nested_jwks_is_a_configuration_error_not_a_crash() -> None:
    """issue 10: a JWKS document nested deeper than the JSON parser's stack raised RecursionError."""
    for nested in ("[" * 100_000 + "]" * 100_000, '{"keys": ' + "[" * 100_000 + "]" * 100_000 + "}"):
        raises_exactly(ConfigurationError, "configuration_error", lambda n=nested: load_jwks(n))  # type: ignore[misc]
        with pytest.raises(ConfigurationError):
            KeySet.parse(nested.encode())


# --- no private member can leak ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_jwks_export_never_contains_private_members(
    signing_keys: dict[str, SigningKey], alg: str, tmp_path: Path
) -> None:
    active = signing_keys[alg]
    previous = SigningKey.generate(alg)  # type: ignore[arg-type]
    keys = KeySet(previous).rotate(active, overlap=3600, now=NOW)
    secrets = _private_values(active) + _private_values(previous)
    assert secrets  # the private JWKs do hold private members
    assert set(keys.to_private_jwks()["keys"][0]) & PRIVATE_MEMBERS

    exports = {
        "public_jwks": keys.public_jwks(now=NOW),
        "verification_key": {"keys": [active.verification_key.to_jwk()]},
        # A verification key imported from a *private* JWK, with extra private-looking members, exports none of them.
        "imported_private": {"keys": [VerificationKey.from_jwk(_polluted(previous)).to_jwk()]},
    }
    for name, exported in exports.items():
        text = json.dumps(exported)
        assert not set(_members(exported)) & PRIVATE_MEMBERS, name
        for jwk in exported["keys"]:
            assert set(jwk) <= PUBLIC_MEMBERS, name
            raises_exactly(ConfigurationError, "configuration_error", lambda jwk=jwk: SigningKey.from_jwk(jwk))  # type: ignore[misc]
        for secret in secrets:
            assert secret not in text, name
        raises_exactly(ConfigurationError, "configuration_error", lambda e=exported: KeySet.from_private_jwks(e))  # type: ignore[misc]
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        raises_exactly(ConfigurationError, "configuration_error", lambda path=path: KeySet.load(path))  # type: ignore[misc]
    assert len(exports["public_jwks"]["keys"]) == 2
    for key in (active, previous):
        for secret in _private_values(key):
            assert secret not in repr(key)


def test_verifier_built_on_a_key_set_stops_accepting_a_retired_key() -> None:
    clock = FakeClock(NOW)
    old = KeySet.generate()
    token = TxnTokenMinter(old, trust_domain="td.example", clock=clock).mint(sub="u", scope="s", req_wl="w")
    rotated = old.rotate(SigningKey.generate(), overlap=60, now=NOW)
    verifier = TxnTokenVerifier(rotated, trust_domain="td.example", clock=clock, cache_size=0)
    assert verifier.verify(token).kid == old.active.kid  # during the overlap
    clock.advance(60)
    with pytest.raises(UnknownKey) as excinfo:
        verifier.verify(token)
    assert excinfo.value.code == "kid_unknown"
