"""WIT verification (draft-ietf-wimse-workload-creds §3, §5.1; identifier draft §4): every refusal has its code."""

from __future__ import annotations

from typing import Any

import pytest

from tests.core.conftest import NOW, FakeClock, raises_exactly, sign
from txtoken import KeySet, SigningKey, StaticKeySource
from txtoken.errors import ConfigurationError, WitExpired, WitKeyInvalid, WitRejected, WitSubjectInvalid
from txtoken.wimse import WitIssuer, WitVerifier, proof_jwk

from .conftest import TRUST_DOMAIN, WORKLOAD, Workload


def _wit(anchor: SigningKey, *, hdr: dict[str, Any] | None = None, **claims: Any) -> str:
    proof = SigningKey.generate("ES256")
    payload: dict[str, Any] = {
        "sub": WORKLOAD,
        "iat": NOW,
        "exp": NOW + 3600,
        "cnf": {"jwk": proof_jwk(proof.verification_key)},
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return sign(hdr or {"alg": anchor.alg, "typ": "wit+jwt", "kid": anchor.kid}, payload, anchor)


def test_an_issued_wit_verifies_and_carries_the_workload_and_its_key(
    workload: Workload, wit_verifier: WitVerifier
) -> None:
    verified = wit_verifier.verify(workload.wit)
    assert verified.workload == WORKLOAD
    assert verified.proof_alg == "EdDSA"
    assert verified.key.public_key == workload.key.verification_key.public_key
    assert verified.claims["iss"] == "https://tts.shop.example"
    assert workload.wit not in repr(verified)


def test_a_verified_wit_is_cached_until_exp(wit_keys: KeySet, workload: Workload, clock: FakeClock) -> None:
    verifier = WitVerifier(wit_keys, trust_domain=TRUST_DOMAIN, clock=clock)
    first = verifier.verify(workload.wit)
    assert verifier.verify(workload.wit) is first
    clock.advance(3600 + 30)  # exp plus the default leeway
    raises_exactly(WitExpired, "wit_expired", lambda: verifier.verify(workload.wit))


def test_a_wit_signed_by_a_key_outside_the_anchors_is_refused(wit_verifier: WitVerifier) -> None:
    stranger = SigningKey.generate("ES256")
    raises_exactly(WitRejected, "wit_invalid", lambda: wit_verifier.verify(_wit(stranger)))


def test_a_wit_whose_kid_names_an_anchor_but_is_signed_by_another_key_is_refused(
    wit_keys: KeySet, wit_verifier: WitVerifier
) -> None:
    forger = SigningKey.generate("ES256")
    hdr = {"alg": "ES256", "typ": "wit+jwt", "kid": wit_keys.active.kid}
    raises_exactly(WitRejected, "wit_invalid", lambda: wit_verifier.verify(_wit(forger, hdr=hdr)))


def test_keys_carried_in_the_wit_header_are_never_used(wit_verifier: WitVerifier) -> None:
    forger = SigningKey.generate("ES256")
    hdr = {"alg": "ES256", "typ": "wit+jwt", "kid": forger.kid, "jwk": forger.verification_key.to_jwk()}
    raises_exactly(WitRejected, "wit_invalid", lambda: wit_verifier.verify(_wit(forger, hdr=hdr)))


@pytest.mark.parametrize("typ", ["txntoken+jwt", "wpt+jwt", "JWT", None])
def test_a_wit_needs_typ_wit_jwt(wit_keys: KeySet, wit_verifier: WitVerifier, typ: str | None) -> None:
    anchor = wit_keys.active
    hdr = {"alg": anchor.alg, "kid": anchor.kid, **({"typ": typ} if typ else {})}
    raises_exactly(WitRejected, "wit_invalid", lambda: wit_verifier.verify(_wit(anchor, hdr=hdr)))


def test_typ_with_the_media_type_prefix_is_accepted(wit_keys: KeySet, wit_verifier: WitVerifier) -> None:
    anchor = wit_keys.active
    hdr = {"alg": anchor.alg, "kid": anchor.kid, "typ": "application/wit+jwt"}
    assert wit_verifier.verify(_wit(anchor, hdr=hdr)).workload == WORKLOAD


@pytest.mark.parametrize(
    "sub",
    [
        "spiffe://other.example/ns/shop/sa/inventory",  # another trust domain
        "spiffe://shop.example/ns/shop?sa=inventory",  # query
        "spiffe://shop.example/ns/shop#inventory",  # fragment
        "spiffe://admin@shop.example/ns/shop",  # userinfo
        "spiffe://shop.example:8443/ns/shop",  # port
        "spiffe://SHOP.example/ns/shop",  # not the configured domain spelling
        "spiffe://shop.example",  # the trust domain itself
        "spiffe://shop.example/",
        "shop.example/ns/shop",  # not absolute
        "https://shop.example/ns/shop",  # scheme not accepted
        "spiffe://shop.example/ns/" + "a" * 2048,  # too long
        "",
        42,
        None,
    ],
)
def test_sub_must_be_a_workload_identifier_of_the_trust_domain_identifier_4(
    wit_keys: KeySet, wit_verifier: WitVerifier, sub: object
) -> None:
    token = _wit(wit_keys.active, sub=sub)
    raises_exactly(WitSubjectInvalid, "wit_sub_invalid", lambda: wit_verifier.verify(token))


def test_exp_is_required(wit_keys: KeySet, wit_verifier: WitVerifier) -> None:
    raises_exactly(WitRejected, "wit_invalid", lambda: wit_verifier.verify(_wit(wit_keys.active, exp=None)))


def test_an_expired_wit_is_refused(wit_keys: KeySet, wit_verifier: WitVerifier) -> None:
    token = _wit(wit_keys.active, exp=NOW - 31)
    raises_exactly(WitExpired, "wit_expired", lambda: wit_verifier.verify(token))


def test_a_wit_issued_in_the_future_is_refused(wit_keys: KeySet, wit_verifier: WitVerifier) -> None:
    token = _wit(wit_keys.active, iat=NOW + 600)
    raises_exactly(WitRejected, "wit_invalid", lambda: wit_verifier.verify(token))


def _cnf(**members: Any) -> dict[str, Any]:
    jwk = proof_jwk(SigningKey.generate("ES256").verification_key)
    jwk.update(members)
    return {"jwk": {k: v for k, v in jwk.items() if v is not None}}


@pytest.mark.parametrize(
    "cnf",
    [
        None,
        {},
        {"jwk": "not an object"},
        _cnf(alg=None),  # cnf.jwk.alg MUST be present
        _cnf(alg="none"),
        _cnf(alg="HS256"),  # symmetric
        _cnf(alg="RSA-OAEP"),  # encryption
        _cnf(alg="EdDSA"),  # does not fit the EC key
        _cnf(d="c2VjcmV0"),  # private member
        {"jwk": {"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}},
        {"jwk": {"kty": "EC", "crv": "P-256", "alg": "ES256", "x": "AA", "y": "AA"}},
    ],
)
def test_cnf_jwk_must_be_a_public_key_with_an_allowed_asymmetric_alg(
    wit_keys: KeySet, wit_verifier: WitVerifier, cnf: Any
) -> None:
    token = _wit(wit_keys.active, cnf=cnf)
    raises_exactly(WitKeyInvalid, "wit_cnf_invalid", lambda: wit_verifier.verify(token))


def test_proof_algorithms_can_be_narrowed(wit_keys: KeySet, workload: Workload, clock: FakeClock) -> None:
    verifier = WitVerifier(wit_keys, trust_domain=TRUST_DOMAIN, proof_algorithms=["ES256"], clock=clock)
    raises_exactly(WitKeyInvalid, "wit_cnf_invalid", lambda: verifier.verify(workload.wit))


def test_an_issuer_allow_list_is_enforced_when_configured(
    wit_keys: KeySet, workload: Workload, clock: FakeClock
) -> None:
    allowed = WitVerifier(wit_keys, trust_domain=TRUST_DOMAIN, issuers=["https://tts.shop.example"], clock=clock)
    assert allowed.verify(workload.wit).workload == WORKLOAD
    other = WitVerifier(wit_keys, trust_domain=TRUST_DOMAIN, issuers=["https://idp.shop.example"], clock=clock)
    raises_exactly(WitRejected, "wit_invalid", lambda: other.verify(workload.wit))


def test_a_retired_anchor_no_longer_verifies(wit_keys: KeySet, workload: Workload, clock: FakeClock) -> None:
    anchors = StaticKeySource(wit_keys.verification_keys(), retire_at={wit_keys.active.kid: NOW + 10}, clock=clock)
    verifier = WitVerifier(anchors, trust_domain=TRUST_DOMAIN, cache_size=0, clock=clock)
    assert verifier.verify(workload.wit).workload == WORKLOAD
    clock.advance(10)
    raises_exactly(WitRejected, "wit_invalid", lambda: verifier.verify(workload.wit))


def test_no_message_contains_the_token(wit_keys: KeySet, wit_verifier: WitVerifier) -> None:
    token = _wit(wit_keys.active, sub="spiffe://other.example/x")
    error = raises_exactly(WitSubjectInvalid, "wit_sub_invalid", lambda: wit_verifier.verify(token))
    assert token not in str(error) and "other.example" not in str(error)


def test_the_issuer_refuses_identifiers_outside_its_trust_domain(issuer: WitIssuer) -> None:
    with pytest.raises(ConfigurationError):
        issuer.issue_with_new_key("spiffe://other.example/ns/x")


@pytest.mark.parametrize("domain", ["Shop.example", "spiffe://shop.example", "shop.example:443", "10.0.0.1", ""])
def test_a_trust_domain_must_be_a_lowercase_dns_name(wit_keys: KeySet, domain: str) -> None:
    with pytest.raises(ConfigurationError):
        WitVerifier(wit_keys, trust_domain=domain)


def test_unreachable_anchors_are_a_503_not_a_refusal(workload: Workload, clock: FakeClock) -> None:
    import socket

    from txtoken import RemoteJwksKeySource
    from txtoken.errors import KeysUnavailable

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    anchors = RemoteJwksKeySource(f"http://127.0.0.1:{port}/wit-jwks.json", allow_http=True, timeout=0.5)
    verifier = WitVerifier(anchors, trust_domain=TRUST_DOMAIN, clock=clock)
    error = raises_exactly(KeysUnavailable, "keys_unavailable", lambda: verifier.verify(workload.wit))
    assert error.http_status == 503


def test_a_cached_wit_is_refused_once_its_anchor_key_is_no_longer_published() -> None:
    """A retired (compromised) trust-anchor key ends the use of the WITs it signed at once, cached ones included."""
    anchor = SigningKey.generate("ES256")
    wit = _wit(anchor, exp=NOW + 3600)
    verifier = WitVerifier(StaticKeySource([anchor.verification_key]), trust_domain=TRUST_DOMAIN, clock=FakeClock(NOW))
    first = verifier.verify(wit)
    assert verifier.verify(wit) is first  # from the cache
    verifier.anchors = StaticKeySource([SigningKey.generate("ES256").verification_key])
    raises_exactly(WitRejected, "wit_invalid", lambda: verifier.verify(wit))
