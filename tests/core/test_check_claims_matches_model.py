"""The verifier's fast claim check and the pydantic model must accept exactly the same claim sets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from txtoken.claims import TxnTokenClaims, check_claims
from txtoken.errors import ClaimInvalid

VALID: dict[str, Any] = {
    "iat": 1_700_000_000,
    "exp": 1_700_000_300,
    "aud": "td.example",
    "txn": "t-1",
    "sub": "alice",
    "scope": "read",
    "req_wl": "gw",
    "tctx": {"a": 1},
    "rctx": {"req_ip": "192.0.2.1"},
    "iss": "https://tts.td.example",
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda children: st.lists(children, max_size=2) | st.dictionaries(st.text(max_size=2), children, max_size=2),
    max_leaves=4,
)
# Values near the edges of the rules: NumericDates as floats (finite or not), ``aud`` as arrays of strings.
edge_values = (
    st.floats(min_value=1_700_000_000, max_value=1_800_000_000)
    | st.sampled_from([float("inf"), float("-inf"), float("nan"), True, 0.0, -0.5])
    | st.lists(st.sampled_from(["td.example", "", "other.example"]), max_size=2)
    | st.lists(json_values, min_size=1, max_size=1)
)


def _model_accepts(claims: dict[str, Any]) -> bool:
    try:
        TxnTokenClaims.model_validate(claims)
    except ValidationError:
        return False
    return True


def _check_accepts(claims: dict[str, Any]) -> bool:
    try:
        check_claims(claims)
    except ClaimInvalid:
        return False
    return True


@settings(max_examples=600, deadline=None)
@given(
    st.dictionaries(st.sampled_from(sorted(VALID)), json_values | edge_values, max_size=4),
    st.sets(st.sampled_from(sorted(VALID)), max_size=3),
)
def test_fast_check_and_model_agree(overrides: dict[str, Any], removed: set[str]) -> None:
    claims = {k: v for k, v in {**VALID, **overrides}.items() if k not in removed}
    assert _check_accepts(claims) == _model_accepts(claims)


@pytest.mark.parametrize("name", ["iat", "exp", "aud", "txn", "sub", "scope", "req_wl"])
def test_missing_required_claim_is_named(name: str) -> None:
    claims = {k: v for k, v in VALID.items() if k != name}
    with pytest.raises(ClaimInvalid) as excinfo:
        check_claims(claims)
    assert excinfo.value.message == f"{name}: missing"


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("aud", ["td.example"], True),
        ("aud", ["td.example", "td.example"], False),
        ("aud", [], False),
        ("aud", [""], False),
        ("exp", 1_700_000_300.5, True),
        ("iat", 1_699_999_999.25, True),
        ("exp", float("inf"), False),
        ("exp", float("nan"), False),
        ("iat", True, False),
    ],
)
def test_relaxed_rules_agree(name: str, value: Any, accepted: bool) -> None:
    """issue 10: the one-member ``aud`` array and non-integer NumericDates, the same in both."""
    claims = {**VALID, name: value}
    assert (_check_accepts(claims), _model_accepts(claims)) == (accepted, accepted)
