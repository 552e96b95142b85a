"""The applicable MUSTs of the draft's normative checklist (spec digest §1.12), one test each, over a real server.

Names carry the draft section. Items covered elsewhere: §13.15 in ``test_replacement.py``, §11.5 requester
authentication in ``test_requester.py`` (and the client checking the TTS certificate in ``test_tls.py``), §15.2 in
``test_audit_log.py``, §3 (one logical TTS over replicas) in
``test_replicas.py``, §6 subject expiry per profile in ``test_subject_profiles.py``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from txtoken.claims import (
    TOKEN_TYPE_JWT,
    TOKEN_TYPE_REFRESH_TOKEN,
    TOKEN_TYPE_SELF_SIGNED,
    TOKEN_TYPE_TXN_TOKEN,
    TOKEN_TYPE_UNSIGNED_JSON,
    TXN_TOKEN_TYP,
)
from txtoken.errors import ConfigurationError
from txtoken.jws import parse_jws
from txtoken.keys import ALGORITHMS, KeySet
from txtoken.mint import TxnTokenMinter, encode_jws
from txtoken.service import load_settings

from .conftest import BATCH, GATEWAY, IDENTIFIER, TRUST_DOMAIN, StartTts, Tts, carries


def _error(response: httpx.Response) -> str:
    assert response.status_code in (400, 401), response.text
    error: str = response.json()["error"]
    return error


def test_s5_1_request_is_rfc8693_form_encoded(tts: Tts) -> None:
    """§5.1: a request made via HTTP MUST use RFC 8693 (a JSON body is not one)."""
    assert tts.post(tts.form()).status_code == 200
    assert _error(httpx.post(tts.token_endpoint, json=tts.form())) == "invalid_request"


@pytest.mark.parametrize("missing", ["audience", "subject_token", "scope"])
def test_s5_1_request_must_name_trust_domain_subject_and_scope(tts: Tts, missing: str) -> None:
    """§5.1: the context MUST include the trust domain, a subject token and the desired scope."""
    assert _error(tts.post(tts.form(**{missing: None}))) == "invalid_request"


def test_s6_s13_1_lifetime_is_short_and_capped(tts: Tts) -> None:
    """§6, §13.1: short-lived; the policy's lifetime, never above its cap (a config beyond the cap is refused)."""
    claims = tts.verifier().verify(tts.issue()).claims
    assert claims.exp - claims.iat == tts.settings.lifetime <= tts.settings.max_lifetime
    with pytest.raises(ConfigurationError, match="lifetime exceeds max_lifetime"):
        load_settings(None, identifier=IDENTIFIER, trust_domains=[TRUST_DOMAIN], lifetime=600, max_lifetime=300)


def test_s6_expired_subject_token_refused(tts: Tts) -> None:
    """§6: MUST NOT issue if the presented token's expiration time has passed."""
    response = tts.post(tts.form(subject_token=tts.platform.access_token(exp_in=0)))
    assert _error(response) == "invalid_request"
    assert "token_expired" in response.json()["error_description"]


def test_s6_first_issuance_may_be_capped_at_the_subject_tokens_exp(tts: Tts, start_tts: StartTts) -> None:
    """§6 SHOULD (issue 10): with ``cap_at_subject_exp`` a first issuance never outlives its subject token; without
    it (the default) the Txn-Token gets the policy's lifetime."""
    subject_exp = int(time.time()) + 30
    expiring = tts.platform.access_token(exp=subject_exp)
    assert tts.verifier().verify(tts.issue(subject_token=expiring)).claims.exp > subject_exp

    def cap(data: dict[str, Any]) -> None:
        data["cap_at_subject_exp"] = True

    capped = start_tts(cap)
    response = capped.post(capped.form(subject_token=capped.platform.access_token(exp=subject_exp)))
    assert response.status_code == 200, response.text
    claims = capped.verifier().verify(response.json()["access_token"]).claims
    assert claims.exp == subject_exp
    assert response.json()["expires_in"] == subject_exp - claims.iat
    long_lived = capped.verifier().verify(capped.issue(subject_token=capped.platform.access_token(exp_in=3600)))
    assert long_lived.claims.exp - long_lived.claims.iat == capped.settings.lifetime
    unsigned = capped.form(
        subject_token=f'{{"sub": "hana", "exp": {subject_exp}}}',
        subject_token_type=TOKEN_TYPE_UNSIGNED_JSON,
        scope="trade.read",
    )
    assert capped.verifier().verify(capped.post(unsigned).json()["access_token"]).claims.exp == subject_exp


def test_s9_1_typ_is_txntoken_jwt_with_a_kid(tts: Tts) -> None:
    """§9.1: typ MUST be txntoken+jwt; kid SHOULD support key rotation."""
    header = parse_jws(tts.issue(), algorithms=frozenset(ALGORITHMS)).header
    assert header.typ == TXN_TOKEN_TYP
    assert header.kid == tts.service.keystore.current().active.kid


def test_s9_2_s11_3_aud_is_the_trust_domain(tts: Tts) -> None:
    """§9.2, §11.3: aud MUST identify the trust domain; the TTS MUST set it to its trust domain."""
    assert tts.verifier().verify(tts.issue()).claims.aud == TRUST_DOMAIN


def test_s9_2_token_not_accepted_outside_its_trust_domain(tts: Tts) -> None:
    """§9.2: MUST NOT be accepted outside aud: the TTS itself refuses it for another trust domain it serves."""
    response = tts.post(tts.replace_form(tts.issue(), tts.platform.svid(), audience="other.example"))
    assert "aud_invalid" in response.json()["error_description"]


def test_s9_2_s11_3_sub_unique_within_the_trust_domain(tts: Tts) -> None:
    """§9.2, §11.3: sub MUST be unique in the trust domain: each issuer owns a prefix, and a configuration where two
    issuers would share one is refused."""
    from txtoken.claims import TOKEN_TYPE_ID_TOKEN

    from_idp = tts.verifier().verify(tts.issue(subject_token=tts.platform.access_token(sub="bob"), scope="trade.read"))
    from_oidc = tts.verifier().verify(
        tts.issue(
            subject_token=tts.platform.id_token(sub="bob"), subject_token_type=TOKEN_TYPE_ID_TOKEN, scope="profile.read"
        )
    )
    assert from_idp.sub != from_oidc.sub
    jwks: dict[str, Any] = {"keys": [tts.keys.rogue.verification_key.to_jwk()]}
    issuers = {
        "a": {"kind": "oauth", "issuer": "https://a.example", "jwks": jwks, "audiences": ["x"]},
        "b": {"kind": "oauth", "issuer": "https://b.example", "jwks": jwks, "audiences": ["x"]},
    }
    with pytest.raises(ConfigurationError, match="issuers.b.subject_prefix"):
        load_settings(None, identifier=IDENTIFIER, trust_domains=[TRUST_DOMAIN], issuers=issuers)


def test_s11_1_grant_type_must_be_token_exchange(tts: Tts) -> None:
    assert _error(tts.post(tts.form(grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer"))) == (
        "unsupported_grant_type"
    )


def test_s11_1_audience_must_be_a_trust_domain_name(tts: Tts) -> None:
    assert _error(tts.post(tts.form(audience=IDENTIFIER))) == "invalid_target"


def test_s11_1_scope_must_be_a_space_delimited_list(tts: Tts) -> None:
    """issue 10: a malformed scope got invalid_request; RFC 6749 §5.2 says invalid_scope."""
    for bad in (" trade.stocks", "trade.stocks ", 'trade"stocks', "trade\tstocks"):
        assert _error(tts.post(tts.form(scope=bad))) == "invalid_scope"


def test_s11_1_requested_token_type_must_be_txn_token(tts: Tts) -> None:
    assert _error(tts.post(tts.form(requested_token_type=TOKEN_TYPE_JWT))) == "invalid_request"


def test_s11_1_s11_2_subject_token_type_must_name_a_known_uri(tts: Tts) -> None:
    """§11.1, §11.2: subject_token_type MUST indicate the token's type and MUST be a URI (not refresh_token)."""
    for bad in ("access_token", "not a uri", TOKEN_TYPE_REFRESH_TOKEN):
        assert _error(tts.post(tts.form(subject_token_type=bad))) == "invalid_request"
    # The type must match the token: an access token presented as a self-signed JWT is refused.
    assert _error(tts.post(tts.form(subject_token_type=TOKEN_TYPE_SELF_SIGNED, scope="trade.read"))) == (
        "invalid_request"
    )


def _self_signed(tts: Tts, **changes: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": GATEWAY, "sub": "frank", "aud": IDENTIFIER, "iat": now, "exp": now + 60}
    claims.update(changes)
    return encode_jws({k: v for k, v in claims.items() if v is not None}, tts.keys.gateway, typ="JWT")


@pytest.mark.parametrize("missing", ["iss", "sub", "aud", "iat", "exp"])
def test_s11_2_1_self_signed_must_contain_iss_sub_aud_iat_exp(tts: Tts, missing: str) -> None:
    token = _self_signed(tts, **{missing: None})
    form = tts.form(subject_token=token, subject_token_type=TOKEN_TYPE_SELF_SIGNED, scope="trade.read")
    assert _error(tts.post(form)) == "invalid_request"


def test_s11_2_1_self_signed_sub_is_used_and_aud_verified(tts: Tts) -> None:
    """§11.2.1: the TTS SHALL use sub, and SHALL verify aud matches its own identifier (not the trust domain)."""
    ok = tts.issue(subject_token=_self_signed(tts), subject_token_type=TOKEN_TYPE_SELF_SIGNED, scope="trade.read")
    assert tts.verifier().verify(ok).sub == "gateway:frank"  # the workload's asserted_subject_prefix
    form = tts.form(
        subject_token=_self_signed(tts, aud=TRUST_DOMAIN), subject_token_type=TOKEN_TYPE_SELF_SIGNED, scope="trade.read"
    )
    assert "aud_invalid" in tts.post(form).json()["error_description"]


def test_s11_2_2_unsigned_json_must_contain_sub_which_is_used(tts: Tts) -> None:
    ok = tts.issue(
        subject_token='{"sub": "gina", "amr": ["pwd"]}', subject_token_type=TOKEN_TYPE_UNSIGNED_JSON, scope="trade.read"
    )
    assert tts.verifier().verify(ok).sub == "gateway:gina"
    form = tts.form(subject_token='{"user": "gina"}', subject_token_type=TOKEN_TYPE_UNSIGNED_JSON, scope="trade.read")
    assert _error(tts.post(form)) == "invalid_request"


def test_s11_3_requester_must_be_authenticated_and_authorized(tts: Tts) -> None:
    """§11.3, §11.5, §13.10: MUST authenticate the workload and check it may obtain these values."""
    assert _error(tts.post(tts.form(client_assertion=None, client_assertion_type=None))) == "invalid_client"
    assert _error(tts.post(tts.form(request_context='{"geo": "US"}'))) == "unauthorized_client"
    assert _error(tts.post(tts.form(request_details='{"amount": 1000000}'))) == "unauthorized_client"


def test_s11_3_subject_token_signature_is_verified(tts: Tts) -> None:
    from .conftest import tamper

    response = tts.post(tts.form(subject_token=tamper(tts.platform.access_token(), scope="trade.stocks admin")))
    assert "signature_invalid" in response.json()["error_description"]


def test_s11_3_iat_exp_txn_are_set_by_the_tts(tts: Tts) -> None:
    """§11.3: iat = time of issuance, exp set, txn a unique id for this transaction (§13.2)."""
    before = int(time.time())
    first, second = (tts.verifier().verify(tts.issue()).claims for _ in range(2))
    after = int(time.time())
    assert before <= first.iat <= after
    assert first.exp > first.iat
    assert first.txn != second.txn
    assert uuid.UUID(first.txn).version == 4


def test_s11_3_multiple_trust_domains_get_the_correct_aud(tts: Tts) -> None:
    """§11.3: a TTS serving several trust domains MUST determine the correct aud for the request."""
    token = tts.issue(
        audience="other.example",
        subject_token=tts.platform.svid(),
        subject_token_type=TOKEN_TYPE_JWT,
        scope="batch.run",
        client_assertion=tts.platform.svid(),
    )
    verified = tts.verifier("other.example").verify(token)
    assert verified.claims.aud == "other.example"
    assert verified.req_wl == BATCH


def test_s11_3_s13_6_scope_is_evaluated_against_the_subject(tts: Tts) -> None:
    subject = tts.platform.access_token(scope="trade.read")
    assert _error(tts.post(tts.form(subject_token=subject, scope="trade.stocks"))) == "invalid_scope"
    assert tts.verifier().verify(tts.issue(subject_token=subject, scope="trade.read")).scopes == {"trade.read"}


def test_s11_4_success_response(tts: Tts) -> None:
    """§11.4, §13.3: token_type N_A, access_token the Txn-Token JWT, issued_token_type txn_token, no refresh_token."""
    response = tts.post(tts.form())
    body = response.json()
    assert body["token_type"] == "N_A"
    assert body["issued_token_type"] == TOKEN_TYPE_TXN_TOKEN
    assert tts.verifier().verify(body["access_token"]).claims.aud == TRUST_DOMAIN
    assert "refresh_token" not in body
    assert response.headers["cache-control"] == "no-store"


def test_s13_3_refresh_token_cannot_request_a_txn_token(tts: Tts) -> None:
    assert _error(tts.post(tts.form(subject_token_type=TOKEN_TYPE_REFRESH_TOKEN))) == "invalid_request"


def test_s13_4_access_token_is_not_embedded(tts: Tts) -> None:
    """§13.4: the Txn-Token MUST NOT contain the access token presented. Issue 10: this test searched the base64url
    text, where a copy could never be found; it searches the decoded claims, and shows that the search sees a copy."""
    subject = tts.platform.access_token()
    token = tts.issue(subject_token=subject, request_details='{"note": "an order"}')
    assert not carries(token, subject)
    leaky = TxnTokenMinter(KeySet.generate(), trust_domain=TRUST_DOMAIN).mint(
        sub="alice", scope="trade.stocks", req_wl=GATEWAY, tctx={"note": subject}
    )
    assert carries(leaky, subject)
    assert carries(leaky, subject.rsplit(".", 1)[0] + ".other-signature")  # a part of it is found too


def test_s13_14_unknown_subject_scope_is_refused_not_unconstrained(tts: Tts) -> None:
    response = tts.post(tts.form(subject_token=tts.platform.access_token(scope=None), scope="trade.read"))
    assert _error(response) == "invalid_scope"
