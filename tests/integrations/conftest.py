"""Fixtures for the integration tests: a token issuer for one trust domain, verifiers, and tokens that fail."""

from __future__ import annotations

import gc
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from txtoken import KeySet, RemoteJwksKeySource, TxnTokenMinter, TxnTokenVerifier, VerifiedTxnToken


@pytest.fixture(scope="package")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="package", autouse=True)
async def one_event_loop_for_grpc_aio() -> AsyncIterator[None]:
    """Keep one event loop for every test of this package.

    grpc.aio's completion-queue poller outlives a test: an event for a channel or server of a finished test (a GOAWAY
    as the server stops) would be delivered to that test's closed loop and fail whichever test runs next.

    At the end, a collection on this loop finalizes the grpc.aio objects left in reference cycles. Finalized later,
    in whatever thread happens to collect (a uvicorn server thread of another package), the last one shuts grpc.aio
    down there and waits for its poller thread forever.
    """
    yield
    gc.collect()


TRUST_DOMAIN = "trade.example"
MAX_TOKEN_SIZE = 2048
DEFAULT_TCTX = {"action": "buy", "symbol": "MSFT", "quantity": 100}


@dataclass
class Issuer:
    """Mints Txn-Tokens for the test trust domain, and the tokens each refusal test needs."""

    keys: KeySet = field(default_factory=KeySet.generate)

    @property
    def minter(self) -> TxnTokenMinter:
        return TxnTokenMinter(self.keys, trust_domain=TRUST_DOMAIN)

    def mint(self, **claims: Any) -> str:
        claims.setdefault("sub", "alice")
        claims.setdefault("scope", "trade read")
        claims.setdefault("req_wl", "gateway")
        claims.setdefault("tctx", DEFAULT_TCTX)
        return self.minter.mint(**claims)

    def verifier(self, **options: Any) -> TxnTokenVerifier:
        # Below gRPC's 8 KiB metadata soft limit, so oversized tokens reach the interceptor on every protocol.
        options.setdefault("max_token_size", MAX_TOKEN_SIZE)
        return TxnTokenVerifier(self.keys, trust_domain=TRUST_DOMAIN, **options)

    def verified(self, **claims: Any) -> VerifiedTxnToken:
        return self.verifier().verify(self.mint(**claims))

    def expired(self) -> str:
        past = TxnTokenMinter(self.keys, trust_domain=TRUST_DOMAIN, clock=lambda: time.time() - 3600)
        return past.mint(sub="alice", scope="trade", req_wl="gateway")

    def foreign_audience(self) -> str:
        return TxnTokenMinter(self.keys, trust_domain="other.example").mint(sub="alice", scope="trade", req_wl="gw")

    def bad_signature(self) -> str:
        header, payload, signature = self.mint().split(".")
        middle = len(signature) // 2
        flipped = "A" if signature[middle] != "A" else "B"
        return ".".join((header, payload, signature[:middle] + flipped + signature[middle + 1 :]))


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def keyless_verifier() -> Iterator[TxnTokenVerifier]:
    """A verifier whose JWKS endpoint is down: every uncached key lookup fails with ``keys_unavailable``."""
    source = RemoteJwksKeySource(f"http://127.0.0.1:{closed_port()}/jwks", allow_http=True, timeout=1.0)
    yield TxnTokenVerifier(source, trust_domain=TRUST_DOMAIN)


#: (token factory name, expected stable code) for every way a presented token can be invalid.
INVALID_TOKENS = [
    ("expired", "token_expired"),
    ("foreign_audience", "aud_invalid"),
    ("bad_signature", "signature_invalid"),
    ("oversized", "token_too_large"),
    ("garbage", "token_malformed"),
]


def invalid_token(issuer: Issuer, kind: str) -> str:
    if kind == "oversized":
        return "a" * (MAX_TOKEN_SIZE + 1)
    if kind == "garbage":
        return "not-a-jwt"
    token: str = getattr(issuer, kind)()
    return token
