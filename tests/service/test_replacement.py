"""Replacement Txn-Tokens (§13.15): txn/sub/aud unchanged, scope only narrows, tctx immutable, expired input
refused, lifetime bounded by the input's, and the call chain of requesting workloads kept under a hop cap and a
size budget."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from txtoken.keys import KeySet
from txtoken.mint import TxnTokenMinter
from txtoken.service import CHAIN_CLAIM
from txtoken.verify import VerifiedTxnToken

from .conftest import GATEWAY, IDENTIFIER, ORDERS, PAYMENTS, TRUST_DOMAIN, StartTts, Tts, tamper

XFCC = {"x-forwarded-client-cert": "By=spiffe://td.example/tts;URI=spiffe://td.example/payments"}


def _replace(tts: Tts, token: str, *, via: str = "orders", **params: Any) -> httpx.Response:
    if via == "orders":
        return tts.post(tts.replace_form(token, tts.platform.k8s_token(), **params))
    return tts.post(tts.replace_form(token, None, **params), headers=XFCC)


def _ok(tts: Tts, response: httpx.Response) -> VerifiedTxnToken:
    assert response.status_code == 200, response.text
    return tts.verifier().verify(response.json()["access_token"])


def _error(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    error: str = response.json()["error"]
    return error


def _mint(tts: Tts, *, iat_ago: int = 0, lifetime: int = 60, **claims: Any) -> str:
    """A Txn-Token signed with the TTS's own key (as if issued earlier)."""
    keys = KeySet.load(tts.service.keystore.path)
    minter = TxnTokenMinter(keys, trust_domain=TRUST_DOMAIN, issuer=IDENTIFIER, clock=lambda: time.time() - iat_ago)
    fields: dict[str, Any] = {"sub": "alice", "scope": "trade.stocks", "req_wl": GATEWAY, "lifetime": lifetime}
    fields.update(claims)
    return minter.mint(**fields)


def test_replacement_keeps_txn_sub_aud_and_records_the_call_chain_13_15(tts: Tts) -> None:
    """§13.15: MUST NOT modify txn, sub, aud; MUST maintain the call chain of requesting workloads."""
    original = tts.verifier().verify(tts.issue(request_details='{"action": "BUY"}'))
    first = _ok(tts, _replace(tts, original.token, request_details='{"order_id": "o-1"}'))
    second = _ok(tts, _replace(tts, first.token, via="payments", request_details='{"payment_id": "p-1"}'))
    for replaced in (first, second):
        assert (replaced.txn, replaced.sub, replaced.claims.aud) == (original.txn, original.sub, TRUST_DOMAIN)
    assert CHAIN_CLAIM not in (original.claims.model_extra or {})
    assert first.req_wl == ORDERS
    assert (first.claims.model_extra or {})[CHAIN_CLAIM] == [GATEWAY]
    assert second.req_wl == PAYMENTS
    assert (second.claims.model_extra or {})[CHAIN_CLAIM] == [GATEWAY, ORDERS]
    assert second.tctx == {"action": "BUY", "order_id": "o-1", "payment_id": "p-1"}


def test_replacement_scope_can_narrow(tts: Tts) -> None:
    token = tts.issue(scope="trade.stocks trade.read")
    response = _replace(tts, token, scope="trade.read")
    assert _ok(tts, response).scopes == {"trade.read"}


@pytest.mark.parametrize("scope", ["trade.stocks trade.read", "trade.read", "profile.read"])
def test_replacement_scope_escalation_refused_13_15(tts: Tts, scope: str) -> None:
    """§13.15: MUST NOT expand the permitted actions (scope)."""
    token = tts.issue(scope="trade.stocks")
    assert _error(_replace(tts, token, scope=scope)) == "invalid_scope"


def test_issue_scope_escalation_refused(tts: Tts) -> None:
    subject = tts.platform.access_token(scope="trade.read")
    assert _error(tts.post(tts.form(subject_token=subject, scope="trade.read trade.stocks"))) == "invalid_scope"


@pytest.mark.parametrize(
    "change", [{"txn": "another-transaction"}, {"sub": "mallory"}, {"aud": "other.example"}, {"scope": "a b"}]
)
def test_tampered_txn_sub_aud_refused(tts: Tts, change: dict[str, str]) -> None:
    forged = tamper(tts.issue(), **change)
    response = _replace(tts, forged, audience=TRUST_DOMAIN, scope="trade.stocks")
    assert _error(response) == "invalid_request"
    assert "signature_invalid" in response.json()["error_description"]


def test_audience_cannot_change_on_replacement(tts: Tts) -> None:
    response = _replace(tts, tts.issue(), audience="other.example")
    assert _error(response) == "invalid_request"
    assert "aud_invalid" in response.json()["error_description"]


def test_existing_tctx_members_are_immutable(tts: Tts) -> None:
    token = tts.issue(request_details='{"action": "BUY", "quantity": "100"}')
    assert _error(_replace(tts, token, request_details='{"action": "SELL"}')) == "unauthorized_client"
    assert _error(_replace(tts, token, request_details='{"quantity": 100}')) == "unauthorized_client"
    same = _ok(tts, _replace(tts, token, request_details='{"action": "BUY"}'))
    assert same.tctx == {"action": "BUY", "quantity": "100"}


def test_new_tctx_member_not_granted_to_the_replacer_refused(tts: Tts) -> None:
    assert _error(_replace(tts, tts.issue(), request_details='{"payment_id": "p-1"}')) == "unauthorized_client"


def test_new_rctx_member_not_granted_to_the_replacer_refused(tts: Tts) -> None:
    assert _error(_replace(tts, tts.issue(), request_context='{"req_ip": "10.0.0.1"}')) == "unauthorized_client"


def test_expired_input_refused_even_within_the_leeway_13_15(tts: Tts) -> None:
    """§13.15: MUST NOT issue a replacement when the input has expired (no clock-skew leeway for this)."""
    just_expired = _mint(tts, iat_ago=61, lifetime=60)
    long_expired = _mint(tts, iat_ago=200, lifetime=60)
    for token in (just_expired, long_expired):
        response = _replace(tts, token)
        assert _error(response) == "invalid_request"
        assert "token_expired" in response.json()["error_description"]


def test_replacement_lifetime_never_exceeds_the_input(tts: Tts) -> None:
    token = _mint(tts, lifetime=30)
    replaced = _ok(tts, _replace(tts, token))
    assert replaced.expires_at == tts.verifier().verify(token).expires_at


def test_policy_may_allow_extending_the_lifetime(tts: Tts) -> None:
    token = _mint(tts, lifetime=30)
    replaced = _ok(tts, _replace(tts, token, via="payments"))
    assert replaced.claims.exp - replaced.claims.iat == 120
    assert replaced.expires_at > tts.verifier().verify(token).expires_at


def test_hop_cap_refuses_beyond_max_replacements_13_15(tts: Tts) -> None:
    """§13.15: SHOULD limit the number of replacements; the cap here is 3."""
    token = tts.issue()
    for _ in range(3):
        token = _ok(tts, _replace(tts, token)).token
    assert (tts.verifier().verify(token).claims.model_extra or {})[CHAIN_CLAIM] == [GATEWAY, ORDERS, ORDERS]
    response = _replace(tts, token)
    assert _error(response) == "invalid_request"
    assert "cap is 3" in response.json()["error_description"]


def test_size_budget_refuses_a_token_of_8_kib_or_more(tts: Tts) -> None:
    response = tts.post(tts.form(request_details=json.dumps({"note": "x" * 6500})))
    assert _error(response) == "invalid_request"
    assert "8192" in response.json()["error_description"]
    assert len(tts.issue(request_details=json.dumps({"note": "x" * 5000}))) < 8192


def test_size_budget_bounds_the_chain(start_tts: StartTts) -> None:
    def small_budget(data: dict[str, Any]) -> None:
        data["max_token_size"] = 1100
        data["max_replacements"] = 50

    tts = start_tts(small_budget)
    token = tts.issue()
    refused = None
    for _ in range(20):
        response = _replace(tts, token)
        if response.status_code != 200:
            refused = response
            break
        token = response.json()["access_token"]
        assert len(token) < 1100
    assert refused is not None
    assert _error(refused) == "invalid_request"
    assert "budget of 1100" in refused.json()["error_description"]


def test_requester_without_txn_token_grant_cannot_replace(tts: Tts) -> None:
    response = tts.post(tts.replace_form(tts.issue(), tts.platform.github_token()))
    assert _error(response) == "unauthorized_client"


def test_txn_token_of_another_tts_refused(tts: Tts) -> None:
    foreign = TxnTokenMinter(KeySet.generate(), trust_domain=TRUST_DOMAIN, issuer=IDENTIFIER).mint(
        sub="alice", scope="trade.stocks", req_wl=GATEWAY
    )
    response = _replace(tts, foreign)
    assert _error(response) == "invalid_request"
    assert "kid_unknown" in response.json()["error_description"]


def test_client_replace_defaults_to_the_current_scope(tts: Tts) -> None:
    token = tts.issue(scope="trade.stocks trade.read")
    with tts.client(credential=tts.platform.k8s_token) as client:
        replaced = client.replace(token, request_details={"order_id": "o-9"})
        narrowed = client.replace(token, scope="trade.read")
    assert tts.verifier().verify(replaced.access_token).scopes == {"trade.stocks", "trade.read"}
    assert replaced.scope == "trade.stocks trade.read"
    assert narrowed.scope == "trade.read"
