"""Fixtures for the credential tests: a token-issuer key, a settable clock, a SPIFFE Workload API on a unix socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from txtoken.keys import SigningKey

from .fakes import Clock, FakeWorkloadApi


@pytest.fixture(scope="session")
def issuer_key() -> SigningKey:
    """The signing key of the platform that issues workload credentials."""
    return SigningKey.generate()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def workload_api(issuer_key: SigningKey, clock: Clock) -> Iterator[FakeWorkloadApi]:
    server = FakeWorkloadApi(issuer_key, clock=clock).start()
    yield server
    server.close()
