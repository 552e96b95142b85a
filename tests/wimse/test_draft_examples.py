"""The drafts' WIT and WPT examples (spec digest §5.2) verify with a pinned clock and are refused once it passes
``exp`` plus the leeway."""

from __future__ import annotations

import pytest

from tests.core.conftest import FakeClock, raises_exactly
from txtoken import VerificationKey
from txtoken.errors import WitExpired, WptExpired
from txtoken.replay import MemoryReplayStore
from txtoken.wimse import (
    DEFAULT_WPT_LEEWAY,
    CallerVerifier,
    VerifiedCaller,
    WitVerifier,
    WptVerifier,
    token_hash,
)
from txtoken.wimse.wit import DEFAULT_WIT_LEEWAY

from .vectors import (
    ACCESS_TOKEN,
    ANCHOR_JWK,
    AUDIENCE,
    NOW,
    TRUST_DOMAIN,
    WIT,
    WIT_EXP,
    WORKLOAD,
    WORKLOAD_JWK,
    WPT,
    WPT_EXP,
)


def _verify(now: float) -> VerifiedCaller:
    clock = FakeClock(now)
    anchors = [VerificationKey.from_jwk(ANCHOR_JWK)]
    verifier = CallerVerifier(
        WitVerifier(anchors, trust_domain=TRUST_DOMAIN, clock=clock),
        WptVerifier(replay_store=MemoryReplayStore(clock=clock), clock=clock),
    )
    return verifier.verify(wit=WIT, wpt=WPT, audience=AUDIENCE, access_token=ACCESS_TOKEN)


def test_the_draft_hashes_are_base64url_sha256_of_the_exact_values() -> None:
    assert token_hash(WIT) == "AaYUfC34D1di2FxQLpiIJJ7Sg8VZ6o8OCdwSf9IToLg"
    assert token_hash(ACCESS_TOKEN) == "CL4wjfpRmNf-bdYIbYLnV9d5rMARGwKYE10wUwzC0jI"


def test_draft_wit_and_wpt_verify_with_a_pinned_clock_spec_5_2() -> None:
    caller = _verify(NOW)
    assert caller.workload == WORKLOAD
    assert caller.wit.claims["jti"] == "x-_1CTL2cca3CSE4cwb_l"
    assert caller.wit.proof_alg == "EdDSA"
    assert caller.wit.key.to_jwk()["x"] == WORKLOAD_JWK["x"]
    assert caller.wpt.jti == "__bwc4ESC3acc2LTC1-_x"
    assert dict(caller.wpt.claims)["aud"] == AUDIENCE


@pytest.mark.parametrize("seconds_past_exp", [0, DEFAULT_WPT_LEEWAY - 1])
def test_draft_wpt_is_accepted_within_the_leeway(seconds_past_exp: int) -> None:
    assert _verify(WPT_EXP + seconds_past_exp).workload == WORKLOAD


def test_draft_wpt_is_refused_past_exp_plus_leeway() -> None:
    raises_exactly(WptExpired, "wpt_expired", lambda: _verify(WPT_EXP + DEFAULT_WPT_LEEWAY))


def test_draft_wit_is_refused_past_exp_plus_leeway() -> None:
    raises_exactly(WitExpired, "wit_expired", lambda: _verify(WIT_EXP + DEFAULT_WIT_LEEWAY))
