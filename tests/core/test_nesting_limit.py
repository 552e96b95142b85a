"""The one nesting limit for JSON in Txn-Tokens: the minter refuses deeper claims, and whatever it signs, the verifier
accepts (both of its JSON paths: the fast one, and the strict one for payloads with backslash escapes)."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from txtoken import KeySet, SigningKey, TxnTokenMinter
from txtoken.claims import MAX_JSON_DEPTH, nests_deeper
from txtoken.errors import ConfigurationError

from .conftest import NOW, TRUST_DOMAIN, FakeClock, raises_exactly, verifier

_SIGNING_KEY = SigningKey.generate("ES256")


def nested(depth: int, leaf: Any = "x") -> Any:
    """A JSON value nesting objects and arrays ``depth`` levels deep around ``leaf``."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def _minter(key: SigningKey) -> TxnTokenMinter:
    return TxnTokenMinter(KeySet(key), trust_domain=TRUST_DOMAIN, clock=FakeClock())


@pytest.mark.parametrize("leaf", ["plain", 'quote " and backslash \\'])
@pytest.mark.parametrize("claim", ["tctx", "rctx"])
def test_claims_at_the_limit_are_signed_and_verified(es256: SigningKey, claim: str, leaf: str) -> None:
    value = {"n": nested(MAX_JSON_DEPTH - 1, leaf)}
    assert not nests_deeper(value) and nests_deeper(value, MAX_JSON_DEPTH - 1)
    tok = _minter(es256).mint(sub="u", scope="s", req_wl="w", **{claim: value})
    assert dict(getattr(verifier(es256).verify(tok), claim)) == value


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 210, 400, 5000])
@pytest.mark.parametrize("claim", ["tctx", "rctx", "extra"])
def test_minter_refuses_claims_deeper_than_the_limit(es256: SigningKey, claim: str, depth: int) -> None:
    """issue 10: the minter signed tctx 200-250 deep (a token its own verifier refuses) and failed with pydantic's
    maximum serialization depth (a 500 at the TTS) about 400 deep."""
    value = {"n": nested(depth - 1)}
    kwargs: dict[str, Any] = {"extra": {"deep": value}} if claim == "extra" else {claim: value}
    error = raises_exactly(
        ConfigurationError, "configuration_error", lambda: _minter(es256).mint(sub="u", scope="s", req_wl="w", **kwargs)
    )
    assert str(MAX_JSON_DEPTH) in error.message


# Plain ASCII strings keep the payload on the verifier's fast JSON path; others bring escapes (the strict path).
json_strings = st.text(alphabet=string.ascii_letters + " .-_", max_size=6) | st.text(max_size=6)
json_leaves = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | json_strings
)


@st.composite
def json_values_up_to_the_limit(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON object nesting at most MAX_JSON_DEPTH levels, often exactly that many, with arbitrary strings (escapes
    included) and siblings along the way."""
    depth = draw(st.integers(1, MAX_JSON_DEPTH) | st.just(MAX_JSON_DEPTH))
    value: Any = draw(json_leaves)
    for _ in range(depth - 1):
        siblings = draw(st.lists(json_leaves, max_size=2))
        if draw(st.booleans()):
            value = [*siblings, value]
        else:
            value = {**{draw(json_strings): s for s in siblings}, draw(json_strings): value}
    return {draw(json_strings): value}


@settings(max_examples=150, deadline=None)
@given(tctx=json_values_up_to_the_limit(), rctx=json_values_up_to_the_limit())
def test_everything_the_minter_signs_the_verifier_accepts(tctx: dict[str, Any], rctx: dict[str, Any]) -> None:
    key = _SIGNING_KEY
    tok = _minter(key).mint(sub="u", scope="s", req_wl="w", tctx=tctx, rctx=rctx)
    verified = verifier(key).verify(tok)
    assert (verified.tctx, verified.rctx) == (tctx, rctx)
    assert verified.claims.iat == NOW


def _depth(value: Any) -> int:
    """The nesting depth by its definition: 0 for a scalar, 1 + the deepest child for an object or array."""
    if isinstance(value, dict | list):
        children = value.values() if isinstance(value, dict) else value
        return 1 + max((_depth(child) for child in children), default=0)
    return 0


_any_json = st.recursive(
    st.none() | st.integers() | st.text(max_size=2),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=2), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(_any_json, st.integers(min_value=0, max_value=6))
def test_nests_deeper_is_depth_over_the_limit(value: Any, limit: int) -> None:
    assert nests_deeper(value, limit) == (_depth(value) > limit)
