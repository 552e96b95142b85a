"""One refusal per recipient check of draft-ietf-wimse-wpt §2 (and §3.1), each named after the check."""

from __future__ import annotations

from typing import Any

import pytest

from tests.core.conftest import NOW, FakeClock, b64url, raises_exactly, sign
from txtoken import SigningKey
from txtoken.errors import (
    ReplayStoreUnavailable,
    WitMissing,
    WptAccessTokenHashMismatch,
    WptAlgMismatch,
    WptAudienceMismatch,
    WptExpired,
    WptLifetimeTooLong,
    WptMissing,
    WptOtherTokenInvalid,
    WptRejected,
    WptReplayed,
    WptSignatureInvalid,
    WptTxnTokenHashMismatch,
    WptTypMismatch,
    WptWitHashMismatch,
)
from txtoken.replay import MemoryReplayStore
from txtoken.wimse import CallerVerifier, WitVerifier, WptVerifier, create_wpt, token_hash

from .conftest import TARGET, WORKLOAD, Workload

TXN_TOKEN = "eyJ0eXAiOiJ0eG50b2tlbitqd3QifQ.e30.c2ln"  # only hashed here: its verification comes after the WPT


def _claims(workload: Workload, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "aud": TARGET,
        "iat": NOW,
        "exp": NOW + 30,
        "jti": "wpt-1",
        "wth": token_hash(workload.wit),
        "tth": token_hash(TXN_TOKEN),
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def _wpt(workload: Workload, *, key: SigningKey | None = None, hdr: dict[str, Any] | None = None, **claims: Any) -> str:
    signer = key or workload.key
    return sign(hdr or {"alg": signer.alg, "typ": "wpt+jwt"}, _claims(workload, **claims), signer)


def _verify(verifier: CallerVerifier, workload: Workload, wpt: str | None, **request: Any) -> object:
    request.setdefault("txn_token", TXN_TOKEN)
    request.setdefault("audience", TARGET)
    return verifier.verify(wit=workload.wit, wpt=wpt, **request)


def test_a_wpt_made_by_txtoken_verifies(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = create_wpt(workload.key, wit=workload.wit, audience=TARGET + "?page=2", txn_token=TXN_TOKEN, now=NOW)
    caller = caller_verifier.verify(wit=workload.wit, wpt=wpt, audience=TARGET, txn_token=TXN_TOKEN)
    assert caller.workload == WORKLOAD
    assert caller.wpt.claims["aud"] == TARGET  # query dropped when made


def test_order_wit_first_a_missing_wit_is_refused_before_the_wpt(caller_verifier: CallerVerifier) -> None:
    raises_exactly(WitMissing, "wit_missing", lambda: caller_verifier.verify(wit=None, wpt=None, audience=TARGET))


def test_check_exactly_one_wpt_missing(caller_verifier: CallerVerifier, workload: Workload) -> None:
    raises_exactly(WptMissing, "wpt_missing", lambda: _verify(caller_verifier, workload, None))


@pytest.mark.parametrize("wpt", ["", "a.b", "a.b.c.d", "!!.e30.c2ln", "eyJhbGciOiJFZERTQSJ9.e30", "e30.e30.c2ln"])
def test_check_single_well_formed_jwt(caller_verifier: CallerVerifier, workload: Workload, wpt: str) -> None:
    raises_exactly(WptRejected, "wpt_invalid", lambda: _verify(caller_verifier, workload, wpt))


def test_check_alg_equals_wit_cnf_jwk_alg(caller_verifier: CallerVerifier, workload: Workload) -> None:
    # The WIT's cnf.jwk.alg is "EdDSA": the RFC 9864 name for the same key is still a different alg string.
    wpt = _wpt(workload, hdr={"alg": "Ed25519", "typ": "wpt+jwt"})
    raises_exactly(WptAlgMismatch, "wpt_alg_mismatch", lambda: _verify(caller_verifier, workload, wpt))


def test_check_signature_with_the_wit_cnf_key_only(caller_verifier: CallerVerifier, workload: Workload) -> None:
    other = SigningKey.generate("EdDSA")
    wpt = _wpt(workload, key=other, hdr={"alg": "EdDSA", "typ": "wpt+jwt", "jwk": other.verification_key.to_jwk()})
    raises_exactly(WptSignatureInvalid, "wpt_signature_invalid", lambda: _verify(caller_verifier, workload, wpt))


def test_check_signature_present(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = _wpt(workload).rsplit(".", 1)[0] + "."
    raises_exactly(WptSignatureInvalid, "wpt_signature_invalid", lambda: _verify(caller_verifier, workload, wpt))


@pytest.mark.parametrize("typ", ["wit+jwt", "txntoken+jwt", "JWT", None])
def test_check_typ_is_wpt_jwt(caller_verifier: CallerVerifier, workload: Workload, typ: str | None) -> None:
    wpt = _wpt(workload, hdr={"alg": "EdDSA", **({"typ": typ} if typ else {})})
    raises_exactly(WptTypMismatch, "wpt_typ_invalid", lambda: _verify(caller_verifier, workload, wpt))


@pytest.mark.parametrize(
    "aud",
    [
        "https://orders.shop.example/charges",  # a WPT made for another service
        "https://payments.shop.example/refunds",  # another path of this service
        "http://payments.shop.example/charges",  # another scheme
        ["https://orders.shop.example/charges"],
        None,
        42,
    ],
)
def test_check_aud_is_this_receivers_target_uri(caller_verifier: CallerVerifier, workload: Workload, aud: Any) -> None:
    wpt = _wpt(workload, aud=aud)
    raises_exactly(WptAudienceMismatch, "wpt_aud_invalid", lambda: _verify(caller_verifier, workload, wpt))


@pytest.mark.parametrize(
    "aud",
    [
        TARGET + "?x=1",
        TARGET + "#frag",
        "HTTPS://Payments.Shop.Example:443/charges",
        ["https://orders.shop.example/", TARGET],
    ],
)
def test_check_aud_ignores_query_and_fragment_and_normalises(
    caller_verifier: CallerVerifier, workload: Workload, aud: Any
) -> None:
    assert _verify(caller_verifier, workload, _wpt(workload, aud=aud)).workload == WORKLOAD  # type: ignore[attr-defined]


def test_check_exp_present(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = _wpt(workload, exp=None)
    raises_exactly(WptRejected, "wpt_invalid", lambda: _verify(caller_verifier, workload, wpt))


def test_check_exp_not_passed(caller_verifier: CallerVerifier, workload: Workload, clock: FakeClock) -> None:
    wpt = _wpt(workload)
    clock.advance(30 + 5)  # exp plus the 5 s leeway
    raises_exactly(WptExpired, "wpt_expired", lambda: _verify(caller_verifier, workload, wpt))


def test_check_exp_not_unreasonably_far_in_the_future(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = _wpt(workload, iat=None, exp=NOW + 66)
    raises_exactly(WptLifetimeTooLong, "wpt_lifetime_too_long", lambda: _verify(caller_verifier, workload, wpt))


def test_check_lifetime_exp_minus_iat_is_short(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = _wpt(workload, iat=NOW - 3600, exp=NOW + 30)
    raises_exactly(WptLifetimeTooLong, "wpt_lifetime_too_long", lambda: _verify(caller_verifier, workload, wpt))


def test_the_maximum_lifetime_is_configurable(workload: Workload, wit_verifier: WitVerifier, clock: FakeClock) -> None:
    verifier = CallerVerifier(wit_verifier, WptVerifier(max_lifetime=20, clock=clock))
    wpt = _wpt(workload)
    raises_exactly(WptLifetimeTooLong, "wpt_lifetime_too_long", lambda: _verify(verifier, workload, wpt))


def test_check_wth_matches_the_wit_sent(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = _wpt(workload, wth=token_hash(workload.wit + "x"))
    raises_exactly(WptWitHashMismatch, "wpt_wth_mismatch", lambda: _verify(caller_verifier, workload, wpt))


def test_check_wth_present(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = _wpt(workload, wth=None)
    raises_exactly(WptWitHashMismatch, "wpt_wth_mismatch", lambda: _verify(caller_verifier, workload, wpt))


def test_check_jti_present(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = _wpt(workload, jti=None)
    raises_exactly(WptRejected, "wpt_invalid", lambda: _verify(caller_verifier, workload, wpt))


def test_check_jti_not_seen_before(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = _wpt(workload)
    _verify(caller_verifier, workload, wpt)
    raises_exactly(WptReplayed, "wpt_replayed", lambda: _verify(caller_verifier, workload, wpt))


def test_check_jti_a_new_jti_is_accepted_and_expired_ones_are_forgotten(
    caller_verifier: CallerVerifier, workload: Workload, clock: FakeClock
) -> None:
    _verify(caller_verifier, workload, _wpt(workload, jti="a"))
    _verify(caller_verifier, workload, _wpt(workload, jti="b"))
    clock.advance(40)
    _verify(caller_verifier, workload, _wpt(workload, jti="a", iat=clock.now, exp=int(clock.now) + 30))


def test_check_jti_a_full_replay_store_refuses(workload: Workload, wit_verifier: WitVerifier, clock: FakeClock) -> None:
    store = MemoryReplayStore(1, clock=clock)
    verifier = CallerVerifier(wit_verifier, WptVerifier(replay_store=store, clock=clock))
    _verify(verifier, workload, _wpt(workload, jti="a"))
    raises_exactly(
        ReplayStoreUnavailable, "replay_store_unavailable", lambda: _verify(verifier, workload, _wpt(workload, jti="b"))
    )


def test_check_tth_mandatory_when_a_txn_token_is_sent(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = _wpt(workload, tth=None)
    raises_exactly(WptTxnTokenHashMismatch, "wpt_tth_mismatch", lambda: _verify(caller_verifier, workload, wpt))


def test_check_tth_matches_the_exact_txn_token_sent(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = _wpt(workload)
    other = TXN_TOKEN[:-1] + "A"
    raises_exactly(
        WptTxnTokenHashMismatch, "wpt_tth_mismatch", lambda: _verify(caller_verifier, workload, wpt, txn_token=other)
    )


def test_check_tth_without_a_txn_token_is_refused(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = _wpt(workload)
    raises_exactly(
        WptTxnTokenHashMismatch, "wpt_tth_mismatch", lambda: _verify(caller_verifier, workload, wpt, txn_token=None)
    )


def test_check_ath_matches_the_access_token(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = _wpt(workload, ath=token_hash("access-1"))
    assert _verify(caller_verifier, workload, wpt, access_token="access-1")
    wpt = _wpt(workload, ath=token_hash("access-1"), jti="wpt-2")
    raises_exactly(
        WptAccessTokenHashMismatch,
        "wpt_ath_mismatch",
        lambda: _verify(caller_verifier, workload, wpt, access_token="access-2"),
    )


def test_check_ath_mandatory_when_an_access_token_is_sent(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = _wpt(workload)
    raises_exactly(
        WptAccessTokenHashMismatch,
        "wpt_ath_mismatch",
        lambda: _verify(caller_verifier, workload, wpt, access_token="access-1"),
    )


def test_check_oth_entries_all_verify(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = _wpt(workload, oth={"x-order-token": token_hash("order-7")})
    assert _verify(caller_verifier, workload, wpt, other_tokens={"X-Order-Token": " order-7 "})
    wpt = _wpt(workload, oth={"x-order-token": token_hash("order-7")}, jti="wpt-2")
    raises_exactly(
        WptOtherTokenInvalid,
        "wpt_oth_invalid",
        lambda: _verify(caller_verifier, workload, wpt, other_tokens={"X-Order-Token": "order-8"}),
    )


def test_check_oth_entry_for_a_header_not_sent(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = _wpt(workload, oth={"x-order-token": token_hash("order-7")})
    raises_exactly(WptOtherTokenInvalid, "wpt_oth_invalid", lambda: _verify(caller_verifier, workload, wpt))


def test_check_oth_unknown_entry_is_refused(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = _wpt(workload, oth={"x-unknown": token_hash("v")})
    raises_exactly(
        WptOtherTokenInvalid,
        "wpt_oth_invalid",
        lambda: _verify(caller_verifier, workload, wpt, other_tokens={"X-Unknown": "v"}),
    )


def test_no_refusal_message_contains_a_token(caller_verifier: CallerVerifier, workload: Workload) -> None:
    wpt = _wpt(workload, aud="https://evil.example/" + b64url(b"x" * 10))
    error = raises_exactly(WptAudienceMismatch, "wpt_aud_invalid", lambda: _verify(caller_verifier, workload, wpt))
    for secret in (wpt, workload.wit, TXN_TOKEN, "evil.example"):
        assert secret not in str(error)
