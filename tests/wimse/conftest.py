"""Shared fixtures for the WIMSE tests: a trust domain's WIT key, a workload with its WIT, and verifiers."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.core.conftest import NOW, FakeClock
from txtoken import KeySet, SigningKey
from txtoken.replay import MemoryReplayStore
from txtoken.wimse import CallerVerifier, WitIssuer, WitVerifier, WptVerifier

TRUST_DOMAIN = "shop.example"
WORKLOAD = "spiffe://shop.example/ns/shop/sa/inventory"
TARGET = "https://payments.shop.example/charges"


@dataclass
class Workload:
    """A workload's credentials: its WIT and the private key of the WIT's ``cnf.jwk``."""

    wit: str
    key: SigningKey


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture(scope="session")
def wit_keys() -> KeySet:
    return KeySet.generate("ES256")


@pytest.fixture
def issuer(wit_keys: KeySet, clock: FakeClock) -> WitIssuer:
    return WitIssuer(wit_keys, trust_domain=TRUST_DOMAIN, issuer="https://tts.shop.example", clock=clock)


@pytest.fixture
def workload(issuer: WitIssuer) -> Workload:
    return Workload(*issuer.issue_with_new_key(WORKLOAD, "EdDSA"))


@pytest.fixture
def wit_verifier(wit_keys: KeySet, clock: FakeClock) -> WitVerifier:
    return WitVerifier(wit_keys, trust_domain=TRUST_DOMAIN, cache_size=0, clock=clock)


@pytest.fixture
def wpt_verifier(clock: FakeClock) -> WptVerifier:
    return WptVerifier(replay_store=MemoryReplayStore(clock=clock), other_token_headers=["X-Order-Token"], clock=clock)


@pytest.fixture
def caller_verifier(wit_verifier: WitVerifier, wpt_verifier: WptVerifier) -> CallerVerifier:
    return CallerVerifier(wit_verifier, wpt_verifier)
