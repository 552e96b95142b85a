"""One test per MUST / MUST NOT (and the SHOULDs the core implements) of the spec digest's checklist.

Numbers are those of the digest's §1.12 (draft-ietf-oauth-transaction-tokens -09 text) and §2.3 (RFC 8725 / RFC
7515 verifier rules); each test names its item. Items that belong to the token service, the integrations or the
workload credentials are tested there, not here.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from txtoken import (
    GRPC_METADATA_KEY,
    HTTP_HEADER,
    TXN_TOKEN_TYP,
    KeySet,
    RemoteJwksKeySource,
    SigningKey,
    TxnTokenMinter,
)
from txtoken.errors import (
    AlgorithmNotAllowed,
    AudienceMismatch,
    ClaimInvalid,
    ConfigurationError,
    LifetimeTooLong,
    SignatureInvalid,
    TokenExpired,
    TokenMalformed,
    TypMismatch,
    UnknownKey,
)
from txtoken.jws import b64url_decode

from .conftest import (
    NOW,
    TRUST_DOMAIN,
    FakeClock,
    b64url,
    claims,
    header,
    raises_exactly,
    rejected,
    sign,
    token,
    verifier,
)


def _header_of(tok: str) -> dict[str, object]:
    value: dict[str, object] = json.loads(b64url_decode(tok.split(".")[0]))
    return value


def _payload_of(tok: str) -> dict[str, object]:
    value: dict[str, object] = json.loads(b64url_decode(tok.split(".")[1]))
    return value


def _minter(key: SigningKey, **options: object) -> TxnTokenMinter:
    return TxnTokenMinter(KeySet(key), trust_domain=TRUST_DOMAIN, clock=FakeClock(), **options)  # type: ignore[arg-type]


# --- §1.12 items 4 and 57: short lifetime (§6, §13.1) -----------------------------------------------------------------


def test_s1_12_4_s6_minting_caps_the_lifetime(es256: SigningKey) -> None:
    """§6: Txn-Tokens are short-lived; the minter never signs a token living longer than its cap (default 300 s)."""
    minted = _payload_of(_minter(es256).mint(sub="u", scope="s", req_wl="w"))
    assert minted["exp"] == NOW + 300
    assert _payload_of(_minter(es256, lifetime=60).mint(sub="u", scope="s", req_wl="w"))["exp"] == NOW + 60
    raises_exactly(ConfigurationError, "configuration_error", lambda: _minter(es256, lifetime=301))
    minter = _minter(es256)
    raises_exactly(
        ConfigurationError, "configuration_error", lambda: minter.mint(sub="u", scope="s", req_wl="w", lifetime=301)
    )
    long_lived = minter.claims(sub="u", scope="s", req_wl="w").model_copy(update={"exp": NOW + 3600})
    raises_exactly(ConfigurationError, "configuration_error", lambda: minter.sign(long_lived))


def test_s1_12_57_s13_1_verification_refuses_a_lifetime_over_the_maximum(es256: SigningKey) -> None:
    """§13.1: the lifetime MUST be kept short: ``exp - iat`` over the configured maximum is refused."""
    v = verifier(es256)
    assert v.verify(token(es256, payload=claims(exp=NOW + 300))).claims.exp == NOW + 300
    rejected(v, token(es256, payload=claims(exp=NOW + 301)), LifetimeTooLong, "lifetime_too_long")
    short = verifier(es256, max_lifetime=60)
    rejected(short, token(es256, payload=claims(exp=NOW + 61)), LifetimeTooLong, "lifetime_too_long")


# --- §1.12 items 7 and 8: the JOSE header (§9.1) ----------------------------------------------------------------------


def test_s1_12_7_s9_1_minted_typ_is_txntoken_jwt(es256: SigningKey) -> None:
    assert TXN_TOKEN_TYP == "txntoken+jwt"
    assert _header_of(_minter(es256).mint(sub="u", scope="s", req_wl="w"))["typ"] == "txntoken+jwt"


@pytest.mark.parametrize(
    "typ", ["txntoken+jwt", "TXNTOKEN+JWT", "application/txntoken+jwt", "Application/TxnToken+JWT"]
)
def test_s1_12_7_s9_1_typ_accepted_case_insensitively_with_or_without_application_prefix(
    es256: SigningKey, typ: str
) -> None:
    """RFC 7515 §4.1.9 (digest §2.3 item 9): media types compare case-insensitively; ``application/`` is implied."""
    assert verifier(es256).verify(token(es256, hdr=header(es256, typ=typ))).sub == "user-42"


@pytest.mark.parametrize(
    "typ",
    [None, "JWT", "jwt", "at+jwt", "txntoken", "application/jwt", "txntoken+jwt ", "wit+jwt", "txn_token", 7, ["x"]],
)
def test_s1_12_7_s9_1_typ_must_be_present_and_txntoken_jwt(es256: SigningKey, typ: object) -> None:
    hdr = header(es256, drop=["typ"]) if typ is None else header(es256, typ=typ)
    rejected(verifier(es256), token(es256, hdr=hdr), TypMismatch, "typ_invalid")


def test_s1_12_8_s9_1_kid_is_always_set(es256: SigningKey) -> None:
    """§9.1: key rotation via ``kid`` (SHOULD): minted tokens carry the key's ``kid``; an empty one is refused.

    A token without ``kid`` is accepted only when the choice of key is unambiguous: ``test_relaxed_verification``."""
    hdr = _header_of(_minter(es256).mint(sub="u", scope="s", req_wl="w"))
    assert hdr == {"alg": "ES256", "typ": "txntoken+jwt", "kid": es256.kid}
    rejected(verifier(es256), token(es256, hdr=header(es256, kid="")), TokenMalformed, "token_malformed")


# --- §1.12 items 9, 10, 32: aud is the trust domain (§9.2, §11.3) -----------------------------------------------------


def test_s1_12_9_s9_2_minted_aud_identifies_the_trust_domain(es256: SigningKey) -> None:
    assert _payload_of(_minter(es256).mint(sub="u", scope="s", req_wl="w"))["aud"] == TRUST_DOMAIN


def test_s1_12_32_s11_3_minter_refuses_an_aud_other_than_its_trust_domain(es256: SigningKey) -> None:
    minter = _minter(es256)
    foreign = minter.claims(sub="u", scope="s", req_wl="w").model_copy(update={"aud": "other.example"})
    raises_exactly(ConfigurationError, "configuration_error", lambda: minter.sign(foreign))


@pytest.mark.parametrize("aud", ["other.example", "TD.EXAMPLE", "td.example.", "https://td.example"])
def test_s1_12_10_s9_2_not_accepted_outside_the_aud_trust_domain(es256: SigningKey, aud: str) -> None:
    rejected(verifier(es256), token(es256, payload=claims(aud=aud)), AudienceMismatch, "aud_invalid")


# --- §1.12 items 12 and 13: rctx and tctx (§9.2.2, §9.2.3; SHOULD) ----------------------------------------------------


def test_s1_12_12_13_s9_2_rctx_and_tctx_are_carried_as_json_objects(es256: SigningKey) -> None:
    tok = _minter(es256).mint(
        sub="u", scope="s", req_wl="w", tctx={"action": "BUY", "n": 1}, rctx={"req_ip": "192.0.2.7"}
    )
    assert _payload_of(tok)["tctx"] == {"action": "BUY", "n": 1}
    verified = verifier(es256).verify(tok)
    assert verified.tctx == {"action": "BUY", "n": 1}
    assert verified.rctx == {"req_ip": "192.0.2.7"}
    # SHOULD, not MUST: a token without them is valid.
    bare = verifier(es256).verify(token(es256, payload=claims(drop=["tctx", "rctx"])))
    assert bare.tctx == {} and bare.rctx == {}


@pytest.mark.parametrize("name", ["tctx", "rctx"])
@pytest.mark.parametrize("value", [[], "BUY", 1, True])
def test_s1_12_12_13_s9_2_rctx_and_tctx_must_be_objects(es256: SigningKey, name: str, value: Any) -> None:
    rejected(verifier(es256), token(es256, payload=claims(**{name: value})), ClaimInvalid, "claim_invalid")


# --- §1.12 items 31, 34, 35, 58: the minter sets iat, exp, txn (§11.3, §13.2) -----------------------------------------


def test_s1_12_31_s11_3_iat_is_the_time_of_issuance(es256: SigningKey) -> None:
    clock = FakeClock(NOW + 0.9)
    minter = TxnTokenMinter(KeySet(es256), trust_domain=TRUST_DOMAIN, clock=clock)
    assert _payload_of(minter.mint(sub="u", scope="s", req_wl="w"))["iat"] == NOW
    clock.advance(100)
    assert _payload_of(minter.mint(sub="u", scope="s", req_wl="w"))["iat"] == NOW + 100


def test_s1_12_34_s11_3_exp_is_set_to_the_expiry(es256: SigningKey) -> None:
    payload = _payload_of(_minter(es256, lifetime=90).mint(sub="u", scope="s", req_wl="w"))
    assert payload["exp"] == NOW + 90
    assert type(payload["exp"]) is int


def test_s1_12_35_58_s11_3_s13_2_txn_is_a_unique_id(es256: SigningKey) -> None:
    minter = _minter(es256)
    txns = {_payload_of(minter.mint(sub="u", scope="s", req_wl="w"))["txn"] for _ in range(200)}
    assert len(txns) == 200
    assert all(isinstance(t, str) and t for t in txns)
    assert _payload_of(minter.mint(sub="u", scope="s", req_wl="w", txn="given-txn"))["txn"] == "given-txn"


# --- §1.12 items 50-53: the Txn-Token header (§12, §12.1) -------------------------------------------------------------


def test_s1_12_50_52_s12_1_the_http_header_is_txn_token() -> None:
    assert HTTP_HEADER == "Txn-Token"
    # gRPC has no binding in the draft; metadata keys are lowercase.
    assert GRPC_METADATA_KEY == "txn-token"
    assert HTTP_HEADER.lower() == GRPC_METADATA_KEY


def test_s1_12_51_s12_authorization_header_is_not_the_carrier() -> None:
    assert HTTP_HEADER.lower() != "authorization"
    assert GRPC_METADATA_KEY != "authorization"


@pytest.mark.parametrize("joiner", [",", ", ", " ", ";"])
def test_s1_12_53_s12_1_exactly_one_token_two_joined_tokens_are_refused(es256: SigningKey, joiner: str) -> None:
    """§12.1: the header value MUST be exactly one Txn-Token: two valid tokens joined are not a token."""
    one, two = token(es256), token(es256, payload=claims(txn="another"))
    rejected(verifier(es256), one + joiner + two, TokenMalformed, "token_malformed")


def test_s1_12_53_s12_1_a_bearer_prefix_is_refused(es256: SigningKey) -> None:
    """The value is the bare compact JWS, not ``Bearer <jwt>``."""
    rejected(verifier(es256), "Bearer " + token(es256), TokenMalformed, "token_malformed")


# --- §1.12 items 54-56: validation by the receiving workload (§12.2) --------------------------------------------------


def test_s1_12_55_s12_2_signature_must_validate(es256: SigningKey, signing_keys: dict[str, SigningKey]) -> None:
    """§12.2 first bullet. (Item 54, validate before authorizing, is the whole rejection suite in test_attacks.)"""
    other = SigningKey.generate("ES256")
    forged = sign(header(es256), claims(), other)  # the real kid, another key's signature
    rejected(verifier(es256), forged, SignatureInvalid, "signature_invalid")


def test_s1_12_55_s12_2_aud_must_identify_the_workloads_trust_domain(es256: SigningKey) -> None:
    tok = token(es256)
    assert verifier(es256).verify(tok).claims.aud == TRUST_DOMAIN
    other = verifier(es256)
    other.trust_domain = "other.example"
    rejected(other, tok, AudienceMismatch, "aud_invalid")


def test_s1_12_55_s12_2_token_must_not_be_expired(es256: SigningKey) -> None:
    tok = token(es256)  # exp = NOW + 120
    assert verifier(es256, clock=FakeClock(NOW + 119)).verify(tok).claims.exp == NOW + 120
    rejected(verifier(es256, clock=FakeClock(NOW + 120), leeway=0), tok, TokenExpired, "token_expired")


def test_s1_12_56_s12_2_the_token_is_kept_exactly_as_received(es256: SigningKey) -> None:
    """§12.2: outbound calls carry the token as received: the verified token is the received string, unchanged,
    including spellings a re-encoding would normalise and claims txtoken does not know."""
    hdr = '{"typ":"Application/TXNTOKEN+JWT", "kid":"' + es256.kid + '",  "alg":"ES256","x-note":1}'
    payload = claims(act={"sub": "agent-7"}, custom_claim=[1, 2])
    tok = sign(hdr, json.dumps(payload, indent=1), es256)
    v = verifier(es256, cache_size=10)
    verified = v.verify(tok)
    assert verified.token == tok
    assert v.verify(tok).token == tok  # also from the verified-token cache
    assert verified.claims.model_extra == {"act": {"sub": "agent-7"}, "custom_claim": [1, 2]}
    assert verified.claims.to_dict()["act"] == {"sub": "agent-7"}


# --- §1.12 items 63 and 65: configuration from a trusted source (§13.7) -----------------------------------------------


def test_s1_12_63_65_s13_7_jwks_only_over_https_unless_explicitly_allowed() -> None:
    """Verification keys come only from configuration; a JWKS URL must be https (http only with ``allow_http``).
    (Redirects not followed: test_keysource; keys never taken from the token: test_attacks.)"""
    RemoteJwksKeySource("https://tts.td.example/.well-known/jwks.json")
    for url in ("http://tts.td.example/jwks", "file:///etc/jwks.json", "ftp://tts.td.example/jwks"):
        raises_exactly(ConfigurationError, "configuration_error", lambda url=url: RemoteJwksKeySource(url))  # type: ignore[misc]
    RemoteJwksKeySource("http://127.0.0.1:1/jwks", allow_http=True)
    raises_exactly(
        ConfigurationError,
        "configuration_error",
        lambda: RemoteJwksKeySource("file:///etc/jwks.json", allow_http=True),
    )


# --- §1.12 item 77: no token is logged verbatim (§15.2) ---------------------------------------------------------------


def test_s1_12_77_s15_2_tokens_are_not_logged_verbatim(es256: SigningKey, caplog: pytest.LogCaptureFixture) -> None:
    """Nothing txtoken logs, and no representation of a verified token or of a rejection, contains the token.
    (Every error class against many bad tokens: test_errors.)"""
    caplog.set_level(logging.DEBUG)
    v = verifier(es256, cache_size=10)
    tok = token(es256)
    verified = v.verify(tok)
    v.verify(tok)
    tampered = tok[:-3] + ("AAA" if not tok.endswith("AAA") else "BBB")
    with pytest.raises(SignatureInvalid) as info:
        v.verify(tampered)
    signature = tok.split(".")[2]
    texts = [repr(verified), str(verified), str(info.value), repr(info.value), caplog.text]
    texts += [r.getMessage() for r in caplog.records]
    for text in texts:
        assert tok not in text and tampered not in text and signature not in text
    assert "user-42" in repr(verified)  # the claims are there, only the token is not


# --- digest §2.3: RFC 8725 verifier rules -----------------------------------------------------------------------------


def test_rfc8725_3_1_caller_specifies_the_algorithms(signing_keys: dict[str, SigningKey]) -> None:
    """§3.1 (digest §2.3 item 1): only the caller's algorithms are used."""
    es, ed = signing_keys["ES256"], signing_keys["Ed25519"]
    only_es = verifier([es.verification_key, ed.verification_key], algorithms=["ES256"])
    assert only_es.verify(token(es)).kid == es.kid
    rejected(only_es, token(ed), AlgorithmNotAllowed, "alg_not_allowed")


@pytest.mark.parametrize("algorithms", [[], ["HS256"], ["none"], ["ES256", "HS256"], ["RS512"], ["es256"]])
def test_rfc8725_3_1_3_2_the_allow_list_admits_only_supported_asymmetric_algorithms(
    es256: SigningKey, algorithms: list[str]
) -> None:
    raises_exactly(ConfigurationError, "configuration_error", lambda: verifier(es256, algorithms=algorithms))


def test_rfc8725_3_1_each_key_is_used_with_exactly_one_algorithm(signing_keys: dict[str, SigningKey]) -> None:
    """§3.1: the RSA key bound to RS256 does not verify a PS256 signature by the same private key, and vice versa."""
    rs = signing_keys["RS256"]
    as_ps = SigningKey("PS256", rs.private_key)
    assert as_ps.kid == rs.kid  # same key material, same RFC 7638 thumbprint
    rejected(verifier(rs), token(as_ps), AlgorithmNotAllowed, "alg_not_allowed")
    rejected(verifier(as_ps), token(rs), AlgorithmNotAllowed, "alg_not_allowed")
    raises_exactly(
        ConfigurationError, "configuration_error", lambda: verifier([rs.verification_key, as_ps.verification_key])
    )


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "HS256", "HS384", "HS512"])
def test_rfc8725_3_2_none_and_hmac_are_never_consumed(es256: SigningKey, alg: str) -> None:
    """§3.2 (digest item 2). Signature bytes are present, so the refusal is the algorithm's (see test_attacks for
    forged HMAC and unsecured tokens)."""
    hdr = b64url(json.dumps(header(es256, alg=alg)).encode())
    body = b64url(json.dumps(claims()).encode())
    rejected(verifier(es256), f"{hdr}.{body}.{b64url(b'x' * 32)}", AlgorithmNotAllowed, "alg_not_allowed")


def test_rfc8725_3_8_iss_must_be_the_configured_issuer(es256: SigningKey) -> None:
    """§3.8 (digest item 5): with an issuer configured, the token's ``iss`` must be that issuer."""
    v = verifier(es256, issuer="https://tts.td.example")
    assert v.verify(token(es256, payload=claims(iss="https://tts.td.example"))).claims.iss == "https://tts.td.example"
    rejected(v, token(es256, payload=claims(iss="https://evil.example")), ClaimInvalid, "claim_invalid")
    rejected(v, token(es256), ClaimInvalid, "claim_invalid")  # no iss at all


@pytest.mark.parametrize("aud", [None, "", [], ["td.example", "td.example"]])
def test_rfc8725_3_9_aud_absent_or_not_a_single_trust_domain_is_refused(es256: SigningKey, aud: object) -> None:
    """§3.9 (digest item 6)."""
    payload = claims(drop=["aud"]) if aud is None else claims(aud=aud)
    rejected(verifier(es256), token(es256, payload=payload), ClaimInvalid, "claim_invalid")


@pytest.mark.parametrize("kid", ["../../../../etc/passwd", "' OR 1=1 --", "x" * 2000, "kid\u0000", "*", "{}"])
def test_rfc8725_3_10_kid_is_only_a_lookup_key(es256: SigningKey, kid: str) -> None:
    """§3.10 (digest item 7): a hostile ``kid`` is looked up, not interpreted, and matches no key."""
    rejected(verifier(es256), token(es256, hdr=header(es256, kid=kid)), UnknownKey, "kid_unknown")


@pytest.mark.parametrize("kid", [7, None, ["k"], {"kid": "k"}, True])
def test_rfc8725_3_10_kid_must_be_a_string(es256: SigningKey, kid: object) -> None:
    rejected(verifier(es256), token(es256, hdr=header(es256, kid=kid)), TokenMalformed, "token_malformed")


@pytest.mark.parametrize("typ", ["at+jwt", "wit+jwt", "wpt+jwt", "JWT", "secevent+jwt"])
def test_rfc8725_3_11_3_12_other_jwt_kinds_never_validate_as_txn_tokens(es256: SigningKey, typ: str) -> None:
    """§3.11/§3.12 (digest item 8): explicit typing keeps JWT kinds apart, even with otherwise valid claims."""
    rejected(verifier(es256), token(es256, hdr=header(es256, typ=typ)), TypMismatch, "typ_invalid")
