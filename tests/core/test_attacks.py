"""Rejection tests, one group per attack class. Each asserts the exact error class and its stable code.

Forged tokens are signed with the real key wherever that makes sense, so the refusal is for the attack itself and not
for an incidental bad signature. Together they are checklist item 54 (§12.2: evaluate the token for validity before
authorizing it).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from txtoken import SigningKey
from txtoken.errors import (
    AlgorithmNotAllowed,
    AudienceMismatch,
    ClaimInvalid,
    LegacyClaims,
    LifetimeTooLong,
    SignatureInvalid,
    TokenExpired,
    TokenMalformed,
    TokenNotYetValid,
    TokenTooLarge,
    TypMismatch,
    UnknownKey,
)
from txtoken.jws import b64url_decode

from ..conftest import RunningServer
from .conftest import (
    NOW,
    REQUIRED,
    b64url,
    claims,
    header,
    raw_signature,
    rejected,
    sign,
    sign_segments,
    token,
    verifier,
)

# --- alg: none, HMAC with the public key ------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_unsecured_token_is_refused(es256: SigningKey, alg: str) -> None:
    """An unsecured JWS (RFC 7515 §A.5: empty signature) never verifies. Its refusal is for the missing signature,
    checked before the header; with any signature bytes present the algorithm itself is refused."""
    unsecured = f"{b64url(json.dumps(header(es256, alg=alg)).encode())}.{b64url(json.dumps(claims()).encode())}."
    rejected(verifier(es256), unsecured, SignatureInvalid, "signature_invalid")
    rejected(verifier(es256), unsecured + b64url(b"\0" * 64), AlgorithmNotAllowed, "alg_not_allowed")


def _public_key_secrets(key: SigningKey) -> dict[str, bytes]:
    public = key.private_key.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    jwk = key.verification_key.to_jwk()
    return {
        "pem": pem,
        "pem-stripped": pem.strip(),
        "der": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk": json.dumps(jwk).encode(),
        "jwk-compact": json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode(),
    }


@pytest.mark.parametrize("alg", ["ES256", "RS256", "Ed25519"])
@pytest.mark.parametrize("form", ["pem", "pem-stripped", "der", "jwk", "jwk-compact"])
@pytest.mark.parametrize("mac", ["HS256", "HS384", "HS512"])
def test_hmac_signed_with_the_public_key_is_refused(
    signing_keys: dict[str, SigningKey], alg: str, form: str, mac: str
) -> None:
    """The RS256/HS256 key confusion: the attacker MACs with the published public key as the secret."""
    key = signing_keys[alg]
    secret = _public_key_secrets(key)[form]
    forged = sign(header(key, alg=mac), claims(), secret)
    rejected(verifier(key), forged, AlgorithmNotAllowed, "alg_not_allowed")


# --- typ confusion ----------------------------------------------------------------------------------------------------


def test_access_token_from_the_same_key_is_not_a_txn_token(es256: SigningKey) -> None:
    """An RFC 9068 access token (``typ: at+jwt``) signed by the very same key, for the same audience."""
    access_token_claims = {
        "iss": "https://as.td.example",
        "exp": NOW + 60,
        "aud": "td.example",
        "sub": "user-42",
        "client_id": "gateway",
        "iat": NOW,
        "jti": "at-1",
        "scope": "trade.stocks",
    }
    access_token = sign(header(es256, typ="at+jwt"), access_token_claims, es256)
    rejected(verifier(es256), access_token, TypMismatch, "typ_invalid")
    # Relabelled as a Txn-Token it still lacks the Txn-Token claims (here txn and req_wl).
    relabelled = sign(header(es256), access_token_claims, es256)
    rejected(verifier(es256), relabelled, ClaimInvalid, "claim_invalid")


# --- aud, exp, iat, nbf, lifetime -------------------------------------------------------------------------------------


@pytest.mark.parametrize("aud", ["other.example", "td.example ", "*"])
def test_wrong_aud_is_refused(es256: SigningKey, aud: str) -> None:
    rejected(verifier(es256), token(es256, payload=claims(aud=aud)), AudienceMismatch, "aud_invalid")


@pytest.mark.parametrize("aud", [["td.example", "other.example"], ["other.example", "td.example"], [], [1], [""]])
def test_aud_as_a_list_other_than_the_trust_domain_alone_is_refused(es256: SigningKey, aud: list[Any]) -> None:
    """A Txn-Token's ``aud`` is the one trust domain: an array is accepted only as exactly that one member."""
    rejected(verifier(es256), token(es256, payload=claims(aud=aud)), ClaimInvalid, "claim_invalid")


def test_aud_as_a_one_member_list_of_another_domain_is_refused(es256: SigningKey) -> None:
    rejected(verifier(es256), token(es256, payload=claims(aud=["other.example"])), AudienceMismatch, "aud_invalid")


@pytest.mark.parametrize(("leeway", "exp_offset", "accepted"), [(30, -30, False), (30, -29, True), (0, 0, False)])
def test_expired_is_refused_and_within_leeway_accepted(
    es256: SigningKey, leeway: int, exp_offset: int, accepted: bool
) -> None:
    exp = NOW + exp_offset
    tok = token(es256, payload=claims(iat=exp - 60, exp=exp))
    v = verifier(es256, leeway=leeway)
    if accepted:
        assert v.verify(tok).expires_at == exp
    else:
        rejected(v, tok, TokenExpired, "token_expired")


@pytest.mark.parametrize(("iat_offset", "accepted"), [(31, False), (30, True), (3600, False)])
def test_iat_in_the_future_is_refused_beyond_leeway(es256: SigningKey, iat_offset: int, accepted: bool) -> None:
    iat = NOW + iat_offset
    tok = token(es256, payload=claims(iat=iat, exp=iat + 60))
    if accepted:
        assert verifier(es256).verify(tok).claims.iat == iat
    else:
        rejected(verifier(es256), tok, TokenNotYetValid, "token_not_yet_valid")


def test_nbf_in_the_future_or_mistyped_is_refused(es256: SigningKey) -> None:
    v = verifier(es256)
    assert v.verify(token(es256, payload=claims(nbf=NOW + 30))).sub == "user-42"
    rejected(v, token(es256, payload=claims(nbf=NOW + 31)), TokenNotYetValid, "token_not_yet_valid")
    rejected(v, token(es256, payload=claims(nbf=str(NOW))), ClaimInvalid, "claim_invalid")


@pytest.mark.parametrize(("lifetime", "error"), [(301, LifetimeTooLong), (86400, LifetimeTooLong), (0, ClaimInvalid)])
def test_lifetime_over_the_maximum_or_not_positive_is_refused(
    es256: SigningKey, lifetime: int, error: type[LifetimeTooLong] | type[ClaimInvalid]
) -> None:
    tok = token(es256, payload=claims(iat=NOW, exp=NOW + lifetime))
    rejected(verifier(es256), tok, error, "lifetime_too_long" if error is LifetimeTooLong else "claim_invalid")


# --- required claims: missing and mistyped ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", REQUIRED)
def test_each_required_claim_missing_is_refused(es256: SigningKey, name: str) -> None:
    assert len(REQUIRED) == 7
    error = rejected(verifier(es256), token(es256, payload=claims(drop=[name])), ClaimInvalid, "claim_invalid")
    assert name in str(error)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("iat", str(NOW)),
        ("iat", True),
        ("iat", [NOW]),
        ("iat", None),
        ("exp", str(NOW + 60)),
        ("exp", {"at": NOW + 60}),
        ("exp", False),
        ("aud", 1),
        ("aud", None),
        ("txn", 12345),
        ("txn", ""),
        ("sub", 42),
        ("sub", {"id": "user-42"}),  # the old sub_id object shape
        ("sub", ""),
        ("scope", ["trade", "stocks"]),
        ("scope", ""),
        ("req_wl", ["gateway"]),
        ("req_wl", None),
        ("tctx", ["BUY"]),
        ("rctx", "192.0.2.7"),
        ("iss", 7),
    ],
)
def test_claim_of_the_wrong_type_is_refused(es256: SigningKey, name: str, value: Any) -> None:
    error = rejected(verifier(es256), token(es256, payload=claims(**{name: value})), ClaimInvalid, "claim_invalid")
    assert name in str(error)


# --- keys: unknown kid, header key injection --------------------------------------------------------------------------


def test_unknown_kid_is_refused(es256: SigningKey) -> None:
    stranger = SigningKey.generate("ES256")
    rejected(verifier(es256), token(stranger), UnknownKey, "kid_unknown")


def test_jwk_header_injection_is_refused(es256: SigningKey) -> None:
    """The attacker embeds its own public key in the ``jwk`` header and signs with it."""
    attacker = SigningKey.generate("ES256")
    jwk = attacker.verification_key.to_jwk()
    v = verifier(es256)
    rejected(v, token(attacker, hdr=header(attacker, jwk=jwk)), UnknownKey, "kid_unknown")
    # Claiming the trusted kid does not help: the trusted key is used, and the signature does not match it.
    rejected(v, sign(header(es256, jwk=jwk), claims(), attacker), SignatureInvalid, "signature_invalid")


def _self_signed_certificate(key: SigningKey) -> str:
    private = key.private_key
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tts.td.example")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(private, hashes.SHA256())
    )
    import base64

    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def test_jku_x5u_x5c_header_keys_are_never_fetched_or_used(
    es256: SigningKey, serve: Callable[..., RunningServer]
) -> None:
    """``jku``/``x5u`` point at an attacker-controlled JWKS (counted: never fetched); ``x5c`` carries the attacker's
    certificate. None of them is a source of keys."""
    attacker = SigningKey.generate("ES256")
    hits: list[str] = []

    async def attacker_jwks(request: Request) -> JSONResponse:
        hits.append(request.url.path)
        return JSONResponse({"keys": [attacker.verification_key.to_jwk()]})

    server = serve(Starlette(routes=[Route("/{path:path}", attacker_jwks)]))
    cert = _self_signed_certificate(attacker)
    injected: dict[str, Any] = {"jku": f"{server.url}/jwks", "x5u": f"{server.url}/cert", "x5c": [cert]}
    v = verifier(es256)
    for member, value in injected.items():
        rejected(v, token(attacker, hdr=header(attacker, **{member: value})), UnknownKey, "kid_unknown")
        forged = sign(header(es256, **{member: value}), claims(), attacker)
        rejected(v, forged, SignatureInvalid, "signature_invalid")
    assert hits == []


# --- tampering and stripping ------------------------------------------------------------------------------------------


def test_tampered_payload_is_refused(es256: SigningKey) -> None:
    tok = token(es256)
    head, payload, signature = tok.split(".")
    changed = json.loads(b64url_decode(payload))
    changed["scope"] = "trade.stocks admin"
    tampered = f"{head}.{b64url(json.dumps(changed).encode())}.{signature}"
    rejected(verifier(es256), tampered, SignatureInvalid, "signature_invalid")


def test_tampered_header_is_refused(es256: SigningKey) -> None:
    head, payload, signature = token(es256).split(".")
    relabelled = b64url(json.dumps(header(es256, typ="application/txntoken+jwt")).encode())
    rejected(verifier(es256), f"{relabelled}.{payload}.{signature}", SignatureInvalid, "signature_invalid")


def test_signature_of_another_token_is_refused(es256: SigningKey) -> None:
    one, two = token(es256), token(es256, payload=claims(sub="user-43"))
    spliced = ".".join(two.split(".")[:2] + one.split(".")[2:])
    rejected(verifier(es256), spliced, SignatureInvalid, "signature_invalid")


def test_stripped_signature_is_refused(es256: SigningKey) -> None:
    head, payload, signature = token(es256).split(".")
    v = verifier(es256)
    rejected(v, f"{head}.{payload}.", SignatureInvalid, "signature_invalid")
    rejected(v, f"{head}.{payload}", TokenMalformed, "token_malformed")
    rejected(v, f"{head}.{payload}.{signature[:-2]}", SignatureInvalid, "signature_invalid")


@pytest.mark.parametrize("shape", ["", ".", "a.b", "a.b.c.d", "a.b.c.d.e", "....."])
def test_not_a_compact_jws_is_refused(es256: SigningKey, shape: str) -> None:
    rejected(verifier(es256), shape, TokenMalformed, "token_malformed")


# --- size -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("junk", ["!" * 8193, "\u00e9" * 8193, "." * 10_000, "a" * 1_000_000])
def test_oversized_token_is_refused_before_parsing(es256: SigningKey, junk: str) -> None:
    """Too large is decided first: not base64url, not ASCII or no JWS shape at all makes no difference."""
    rejected(verifier(es256), junk, TokenTooLarge, "token_too_large")


def test_size_cap_boundary_and_configuration(es256: SigningKey) -> None:
    def padded(n: int) -> str:
        return token(es256, payload=claims(tctx={"pad": "x" * n}))

    n = 5000
    while len(padded(n + 1)) <= 8192:
        n += 1
    largest, too_large = padded(n), padded(n + 1)
    assert len(largest) > 8180 and len(too_large) > 8192  # the default cap is 8 KiB
    assert verifier(es256).verify(largest).tctx["pad"] == "x" * n
    rejected(verifier(es256), too_large, TokenTooLarge, "token_too_large")
    small = token(es256)
    assert verifier(es256, max_token_size=len(small)).verify(small).sub == "user-42"
    rejected(verifier(es256, max_token_size=len(small) - 1), small, TokenTooLarge, "token_too_large")


# --- ECDSA edge signatures --------------------------------------------------------------------------------------------


_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _rs(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@pytest.mark.parametrize(
    "make_signature",
    [
        pytest.param(lambda good: _rs(0, 0), id="r=s=0"),
        pytest.param(lambda good: _rs(0, int.from_bytes(good[32:], "big")), id="r=0"),
        pytest.param(lambda good: _rs(int.from_bytes(good[:32], "big"), 0), id="s=0"),
        pytest.param(lambda good: _rs(_P256_ORDER, _P256_ORDER), id="r=s=n"),
        pytest.param(lambda good: b"\xff" * 64, id="all-ones"),
        pytest.param(lambda good: good[:63], id="63-bytes"),
        pytest.param(lambda good: good + b"\0", id="65-bytes"),
        pytest.param(
            lambda good: encode_dss_signature(int.from_bytes(good[:32], "big"), int.from_bytes(good[32:], "big")),
            id="DER-encoded",
        ),
    ],
)
def test_degenerate_ecdsa_signatures_are_refused(es256: SigningKey, make_signature: Callable[[bytes], bytes]) -> None:
    signing_input = f"{b64url(json.dumps(header(es256)).encode())}.{b64url(json.dumps(claims()).encode())}"
    good = raw_signature("ES256", es256, signing_input.encode())
    v = verifier(es256)
    assert v.verify(f"{signing_input}.{b64url(good)}").sub == "user-42"
    rejected(v, f"{signing_input}.{b64url(make_signature(good))}", SignatureInvalid, "signature_invalid")


# --- JSON parser differentials ----------------------------------------------------------------------------------------


def _header_text(key: SigningKey, extra: str = "") -> str:
    return f'{{"alg":"{key.alg}","typ":"txntoken+jwt","kid":"{key.kid}"{extra}}}'


def _payload_text(extra: str = "") -> str:
    return json.dumps(claims())[:-1] + extra + "}"


@pytest.mark.parametrize(
    ("hdr_extra", "payload_extra"),
    [
        pytest.param(',"kid":"other"', "", id="header-kid"),
        pytest.param(',"alg":"HS256"', "", id="header-alg"),
        pytest.param(',"typ":"at+jwt"', "", id="header-typ"),
        pytest.param(',"typ":"txntoken+jwt"', "", id="header-same-value"),
        pytest.param("", ', "aud": "other.example"', id="payload-aud"),
        pytest.param("", ', "sub": "admin"', id="payload-sub"),
        pytest.param("", ', "scope": "trade.stocks"', id="payload-same-value"),
        pytest.param("", ', "x": {"a": 1, "a": 2}', id="payload-nested"),
    ],
)
def test_duplicate_json_members_are_refused(es256: SigningKey, hdr_extra: str, payload_extra: str) -> None:
    """Signed with the real key: a parser that keeps the first or the last value would see another token."""
    tok = sign(_header_text(es256, hdr_extra), _payload_text(payload_extra), es256)
    rejected(verifier(es256), tok, TokenMalformed, "token_malformed")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(_payload_text(', "tctx2": NaN'), id="NaN"),
        pytest.param(_payload_text(', "n": Infinity'), id="Infinity"),
        pytest.param("[1, 2]", id="array"),
        pytest.param('"claims"', id="string"),
        pytest.param("null", id="null"),
        pytest.param(_payload_text() + " x", id="trailing-garbage"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
    ],
)
def test_payload_that_is_not_a_json_object_is_refused(es256: SigningKey, payload: str | bytes) -> None:
    rejected(verifier(es256), sign(header(es256), payload, es256), TokenMalformed, "token_malformed")


def test_deeply_nested_payload_is_refused(es256: SigningKey) -> None:
    deep = _payload_text(', "x": ' + "[" * 5000 + "]" * 5000)
    tok = sign(header(es256), deep, es256)
    rejected(verifier(es256, max_token_size=50_000), tok, TokenMalformed, "token_malformed")


@pytest.mark.parametrize("hdr", ["[]", '"x"', "{", '{"typ":"txntoken+jwt","kid":"k"}', '{"alg":7,"kid":"k"}'])
def test_header_that_is_not_a_usable_json_object_is_refused(es256: SigningKey, hdr: str) -> None:
    rejected(verifier(es256), sign(hdr, claims(), es256, alg="ES256"), TokenMalformed, "token_malformed")


# --- crit, b64 --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [{"crit": ["exp"], "exp": NOW + 60}, {"crit": []}, {"crit": ["b64"], "b64": False}, {"b64": False}],
)
def test_crit_and_unencoded_payload_headers_are_refused(es256: SigningKey, extra: dict[str, Any]) -> None:
    rejected(verifier(es256), token(es256, hdr=header(es256, **extra)), TokenMalformed, "token_malformed")


# --- base64url strictness ---------------------------------------------------------------------------------------------


def _flip_unused_bits(segment: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) ^ 1]


#: Spellings of the same bytes that a lax decoder accepts: each must be refused although it decodes "correctly".
_LAX_SPELLINGS: dict[str, Callable[[str], str]] = {
    "padding": lambda s: s + "=" * (-len(s) % 4),
    "standard-alphabet": lambda s: s.translate(str.maketrans("-_", "+/")),
    "non-canonical-bits": _flip_unused_bits,
    "newline": lambda s: s[:8] + "\n" + s[8:],
    "space": lambda s: s[:8] + " " + s[8:],
    "invalid-char": lambda s: s[:8] + "!" + s[8:],
}


def _awkward_segment(text: Callable[[str], str]) -> str:
    """Base64url of ``text(filler)`` for the first filler whose encoding has length 4k+2 (so padding and unused bits
    exist) and contains both ``-`` and ``_`` (so the standard alphabet differs)."""
    for n in range(10_000):
        segment = b64url(text("~" * (n % 3) + str(n)).encode())
        if len(segment) % 4 == 2 and "-" in segment and "_" in segment:
            return segment
    raise AssertionError("no awkward segment found")


@pytest.mark.parametrize("spelling", sorted(_LAX_SPELLINGS))
@pytest.mark.parametrize("where", ["header", "payload", "signature"])
def test_non_base64url_spellings_are_refused(es256: SigningKey, where: str, spelling: str) -> None:
    head = _awkward_segment(lambda filler: _header_text(es256, f',"n":"{filler}","m":"???~~~>>>"'))
    body = _awkward_segment(lambda filler: _payload_text(f', "n": "{filler}", "m": "???~~~>>>"'))
    good = sign_segments(head, body, es256)
    while not ("-" in good.split(".")[2] and "_" in good.split(".")[2]):  # ECDSA signatures are randomised
        good = sign_segments(head, body, es256)
    v = verifier(es256)
    assert v.verify(good).sub == "user-42"
    respell = _LAX_SPELLINGS[spelling]
    if where == "header":
        bad = sign_segments(respell(head), body, es256)
    elif where == "payload":
        bad = sign_segments(head, respell(body), es256)
    else:
        bad = f"{head}.{body}.{respell(good.split('.')[2])}"
    assert bad != good
    rejected(v, bad, TokenMalformed, "token_malformed")


def test_non_ascii_token_is_refused(es256: SigningKey) -> None:
    tok = token(es256)
    rejected(verifier(es256), tok[:10] + "\u0430" + tok[11:], TokenMalformed, "token_malformed")  # Cyrillic a


# --- legacy claim names -----------------------------------------------------------------------------------------------


_LEGACY: dict[str, tuple[str, Any, Any]] = {
    # legacy claim: (current claim it replaces, its value, the value expected after mapping)
    "purp": ("scope", "trade.stocks", "trade.stocks"),
    "azd": ("tctx", {"action": "BUY"}, {"action": "BUY"}),
    "req_ctx": ("rctx", {"req_ip": "192.0.2.7"}, {"req_ip": "192.0.2.7"}),
}


@pytest.mark.parametrize("legacy", sorted(_LEGACY))
def test_legacy_claim_names_are_refused_without_the_switch(es256: SigningKey, legacy: str) -> None:
    current, value, _ = _LEGACY[legacy]
    tok = token(es256, payload=claims(drop=[current], **{legacy: value}))
    rejected(verifier(es256), tok, LegacyClaims, "legacy_claims")
    # Refused even next to the current name: an old claim is never silently ignored.
    rejected(verifier(es256), token(es256, payload=claims(**{legacy: value})), LegacyClaims, "legacy_claims")


@pytest.mark.parametrize("legacy", sorted(_LEGACY))
def test_legacy_claim_names_are_mapped_with_the_switch(es256: SigningKey, legacy: str) -> None:
    current, value, expected = _LEGACY[legacy]
    tok = token(es256, payload=claims(drop=[current], **{legacy: value}))
    verified = verifier(es256, legacy_claims=True).verify(tok)
    assert verified.claims.to_dict()[current] == expected
    assert legacy not in verified.claims.to_dict()


def test_legacy_typ_is_refused_without_the_switch_and_accepted_with_it(es256: SigningKey) -> None:
    tok = token(es256, hdr=header(es256, typ="txn_token"))
    rejected(verifier(es256), tok, TypMismatch, "typ_invalid")
    assert verifier(es256, legacy_claims=True).verify(tok).sub == "user-42"


def test_a_whole_draft_01_token_maps_to_the_current_claims(es256: SigningKey) -> None:
    """``typ: txn_token``, ``purp``, ``azd`` and ``req_ctx`` carrying ``req_wl``, as early drafts wrote them."""
    old = claims(drop=["scope", "tctx", "rctx", "req_wl"])
    old.update(purp="trade.stocks", azd={"ticker": "MSFT"}, req_ctx={"req_ip": "192.0.2.7", "req_wl": "gateway"})
    tok = token(es256, hdr=header(es256, typ="txn_token"), payload=old)
    rejected(verifier(es256), tok, TypMismatch, "typ_invalid")
    mapped = verifier(es256, legacy_claims=True).verify(tok)
    assert (mapped.claims.scope, mapped.tctx, mapped.req_wl) == ("trade.stocks", {"ticker": "MSFT"}, "gateway")
    assert mapped.rctx["req_ip"] == "192.0.2.7"
    # The switch maps names; it does not relax the checks of the current draft.
    expired = token(es256, hdr=header(es256, typ="txn_token"), payload={**old, "exp": NOW - 3600, "iat": NOW - 3660})
    rejected(verifier(es256, legacy_claims=True), expired, TokenExpired, "token_expired")


# --- algorithms: RSA bound to one padding, Ed25519 under both names ---------------------------------------------------


@pytest.mark.parametrize(("bound", "presented"), [("RS256", "PS256"), ("PS256", "RS256")])
def test_rsa_key_is_bound_to_one_algorithm(signing_keys: dict[str, SigningKey], bound: str, presented: str) -> None:
    key = signing_keys[bound]
    v = verifier(key)
    assert v.verify(token(key)).kid == key.kid
    forged = token(key, hdr=header(key, alg=presented), alg=presented)  # a valid signature under the other padding
    rejected(v, forged, AlgorithmNotAllowed, "alg_not_allowed")


@pytest.mark.parametrize("bound", ["Ed25519", "EdDSA"])
@pytest.mark.parametrize("presented", ["Ed25519", "EdDSA"])
def test_ed25519_tokens_verify_under_both_algorithm_names(
    signing_keys: dict[str, SigningKey], bound: str, presented: str
) -> None:
    """RFC 9864 renamed EdDSA-with-Ed25519 to ``Ed25519``; both header names are accepted for an Ed25519 key."""
    key = signing_keys[bound]
    tok = token(key, hdr=header(key, alg=presented))
    assert verifier(key).verify(tok).kid == key.kid
    other = "EdDSA" if presented == "Ed25519" else "Ed25519"
    rejected(verifier(key, algorithms=[other]), tok, AlgorithmNotAllowed, "alg_not_allowed")


def test_ed25519_key_does_not_verify_other_algorithms(signing_keys: dict[str, SigningKey]) -> None:
    ed = signing_keys["Ed25519"]
    hdr = b64url(json.dumps(header(ed, alg="ES256")).encode())
    body = b64url(json.dumps(claims()).encode())
    signature = raw_signature("Ed25519", ed, f"{hdr}.{body}".encode())
    rejected(verifier(ed), f"{hdr}.{body}.{b64url(signature)}", AlgorithmNotAllowed, "alg_not_allowed")
