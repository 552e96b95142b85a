"""Minting and the claim model: every algorithm, the header written, unknown claims kept, configuration checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings, strategies as st
from pydantic import ValidationError

from txtoken import KeySet, SigningKey, TxnTokenClaims, TxnTokenMinter, TxnTokenVerifier
from txtoken.errors import ConfigurationError
from txtoken.jws import b64url_decode
from txtoken.mint import encode_jws

from .conftest import ALL_ALGS, NOW, TRUST_DOMAIN, FakeClock, claims, raises_exactly, verifier


def _minter(key: SigningKey, **options: Any) -> TxnTokenMinter:
    return TxnTokenMinter(KeySet(key), trust_domain=TRUST_DOMAIN, clock=FakeClock(), **options)


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_mint_with_every_algorithm(signing_keys: dict[str, SigningKey], alg: str) -> None:
    key = signing_keys[alg]
    tok = _minter(key).mint(sub="user-42", scope="trade.stocks", req_wl="gateway")
    assert json.loads(b64url_decode(tok.split(".")[0])) == {"alg": alg, "typ": "txntoken+jwt", "kid": key.kid}
    verified = verifier(key).verify(tok)
    assert (verified.sub, verified.scopes, verified.req_wl, verified.kid) == (
        "user-42",
        frozenset({"trade.stocks"}),
        "gateway",
        key.kid,
    )


def test_mint_uses_the_active_key_after_rotation(es256: SigningKey) -> None:
    new = SigningKey.generate("Ed25519")
    tok = TxnTokenMinter(KeySet(es256).rotate(new, overlap=60), trust_domain=TRUST_DOMAIN).mint(
        sub="u", scope="s", req_wl="w"
    )
    assert json.loads(b64url_decode(tok.split(".")[0]))["kid"] == new.kid


def test_extra_claims_are_kept_but_cannot_replace_the_core_ones(es256: SigningKey) -> None:
    minter = _minter(es256, issuer="https://tts.td.example")
    tok = minter.mint(
        sub="u",
        scope="a b",
        req_wl="w",
        extra={"act": {"sub": "agent-7"}, "aud": "evil.example", "iat": 1, "exp": 2**40, "iss": "x"},
    )
    verified = verifier(es256).verify(tok)
    data = verified.claims.to_dict()
    assert (data["aud"], data["iat"], data["exp"], data["iss"]) == (
        TRUST_DOMAIN,
        NOW,
        NOW + 300,
        "https://tts.td.example",
    )
    assert verified.claims.model_extra == {"act": {"sub": "agent-7"}}
    assert verified.scopes == frozenset({"a", "b"})


@pytest.mark.parametrize(
    "bad",
    [{"sub": ""}, {"sub": 42}, {"scope": ""}, {"req_wl": None}, {"txn": 7}, {"scope": ["a", "b"]}],
)
def test_invalid_claims_are_refused_at_minting(es256: SigningKey, bad: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {"sub": "u", "scope": "s", "req_wl": "w", **bad}
    raises_exactly(ConfigurationError, "configuration_error", lambda: _minter(es256).mint(**kwargs))


def test_header_members_typ_and_kid_cannot_be_overridden(es256: SigningKey) -> None:
    tok = encode_jws({"a": 1}, es256, typ="txntoken+jwt", headers={"typ": "JWT", "kid": "other"})
    assert json.loads(b64url_decode(tok.split(".")[0])) == {"alg": "ES256", "typ": "txntoken+jwt", "kid": es256.kid}


def test_claims_model_is_frozen_strict_and_keeps_unknown_claims() -> None:
    model = TxnTokenClaims.model_validate(claims(custom={"k": [1]}, tctx=None, rctx=None))
    with pytest.raises(ValidationError):
        model.sub = "someone-else"
    assert model.model_extra == {"custom": {"k": [1]}}
    assert "tctx" not in model.to_dict() and "iss" not in model.to_dict()
    assert model.to_dict()["custom"] == {"k": [1]}
    with pytest.raises(ValidationError):
        TxnTokenClaims.model_validate(claims(iat="1800000000"))


@pytest.mark.parametrize(
    "options",
    [
        {"trust_domain": ""},
        {"leeway": -1},
        {"max_lifetime": 0},
        {"max_token_size": 0},
        {"algorithms": ["ES256", "none"]},
    ],
)
def test_verifier_configuration_is_checked(es256: SigningKey, options: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {"trust_domain": TRUST_DOMAIN, **options}
    raises_exactly(
        ConfigurationError, "configuration_error", lambda: TxnTokenVerifier([es256.verification_key], **kwargs)
    )


@pytest.mark.parametrize(
    ("extra", "reason"),
    [({"purp": "trade"}, "purp"), ({"azd": {"a": 1}}, "azd"), ({"req_ctx": {}}, "req_ctx"), ({"nbf": "1"}, "nbf")],
)
def test_minter_refuses_claims_its_verifier_would_refuse(es256: SigningKey, extra: dict[str, Any], reason: str) -> None:
    error = raises_exactly(
        ConfigurationError,
        "configuration_error",
        lambda: _minter(es256).mint(sub="u", scope="s", req_wl="w", extra=extra),
    )
    assert reason in error.message


_claim_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=2) | st.dictionaries(st.text(max_size=2), children, max_size=2),
    max_leaves=4,
)
_edge_values = st.sampled_from(
    [NOW + 60.5, NOW + 10_000, TRUST_DOMAIN, [TRUST_DOMAIN], [TRUST_DOMAIN, TRUST_DOMAIN], "other.example", "1"]
)


def _signed_payload(sign: Callable[[], str]) -> dict[str, Any] | str:
    """The payload ``sign`` signs (its signature is not compared: ECDSA's is randomized), or its refusal's code."""
    try:
        return dict(json.loads(b64url_decode(sign().split(".")[1])))
    except ConfigurationError as exc:
        return exc.code


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*claims(), "iss", "nbf", "purp", "act", "exp"]), _claim_values | _edge_values, max_size=3
    ),
    st.sets(st.sampled_from(sorted(claims())), max_size=2),
)
@example(overrides={"act": float("inf")}, removed=set())  # the model's JSON mode once signed it as null
@example(overrides={"tctx": {"n": float("nan")}}, removed=set())
def test_a_mapping_is_signed_as_the_model_is(overrides: dict[str, Any], removed: set[str]) -> None:
    """The TTS signs a plain mapping (no model built): it must be refused and signed exactly as the model is."""
    data = {k: v for k, v in {**claims(), **overrides}.items() if k not in removed}
    minter = _minter(SigningKey.generate())

    def via_model() -> str:
        try:
            model = TxnTokenClaims.model_validate(data)
        except ValidationError:
            raise ConfigurationError("invalid") from None
        return minter.sign(model)

    assert _signed_payload(lambda: minter.sign(data)) == _signed_payload(via_model)
