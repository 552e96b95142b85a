"""Egress with client credentials + private_key_jwt (RFC 7523 §2.2) against a REAL authorization server:
node-oidc-provider. The call carries the other domain's access token and never the Txn-Token, WIT or WPT."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from txtoken.context import use_transaction
from txtoken.credentials import KeyPairAssertionSource
from txtoken.credentials.external import ClientCredentialsGrant, ExternalTokenSource
from txtoken.errors import InvalidClient
from txtoken.keys import KeySet, SigningKey
from txtoken.mint import TxnTokenMinter
from txtoken.verify import TxnTokenVerifier
from txtoken_httpx import EgressAuth

from .conftest import SCOPE, ExternalApi, OpenIdProvider

INTERNAL = {"Txn-Token": "internal.txn.token", "Workload-Identity-Token": "a.b.c", "Workload-Proof-Token": "d.e.f"}


Sources = Callable[..., ExternalTokenSource]


@pytest.fixture
def sources(oidc_provider: OpenIdProvider) -> Iterator[Sources]:
    """Token sources for the OpenID Provider's client (closed after the test)."""
    made: list[ExternalTokenSource] = []

    def make(key: SigningKey | None = None, **options: Any) -> ExternalTokenSource:
        op = oidc_provider
        assertion = KeyPairAssertionSource(key or op.client_key, workload_id=op.client_id, audience=op.issuer)
        grant = ClientCredentialsGrant(op.client_id, assertion, scope=SCOPE)
        made.append(ExternalTokenSource(op.token_endpoint, grant, **options))
        return made[-1]

    yield make
    for source in made:
        source.close()


def test_call_to_another_domain_carries_its_access_token_and_nothing_internal(
    sources: Sources, oidc_api: ExternalApi
) -> None:
    """Inside a transaction, with internal headers set by hand: the partner sees only its own access token, whose
    subject is the trust domain (egress identity generalization), never a workload name or the Txn-Token."""
    keys = KeySet.generate()
    txn = TxnTokenVerifier(keys, trust_domain="shop.example").verify(
        TxnTokenMinter(keys, trust_domain="shop.example").mint(sub="alice", scope="x", req_wl="spiffe://shop/orders")
    )
    with use_transaction(txn), httpx.Client(auth=EgressAuth(sources())) as client:
        response = client.get(f"{oidc_api.url}/stock/widget", headers=INTERNAL)
        again = client.get(f"{oidc_api.url}/stock/gadget")
    assert response.status_code == 200, response.text
    assert response.json()["sub"] == "shop.example"
    assert again.status_code == 200
    for record in oidc_api.seen:
        headers = {k.lower() for k in record["headers"]}
        assert not headers & {"txn-token", "workload-identity-token", "workload-proof-token"}
        assert txn.token not in str(record["headers"]) and "spiffe://" not in str(record["headers"])
    assert len(oidc_api.tokens()) == 1  # cached: one token for both calls


def test_a_401_fetches_a_new_token_once(sources: Sources, oidc_api: ExternalApi) -> None:
    with httpx.Client(auth=EgressAuth(sources())) as client:
        assert client.get(f"{oidc_api.url}/stock/widget").status_code == 200
        oidc_api.revoked |= oidc_api.tokens()
        retried = client.post(f"{oidc_api.url}/stock/widget", content=b"reserve 2")
        assert retried.status_code == 200
        assert retried.json()["body"] == "reserve 2"  # the body went again with the new token
        assert len(oidc_api.tokens()) == 2
        oidc_api.revoked |= oidc_api.tokens()
        oidc_api.check = _always_revoked(oidc_api)
    with httpx.Client(auth=EgressAuth(sources())) as client:
        refused = client.get(f"{oidc_api.url}/stock/widget")
    assert refused.status_code == 401
    assert len(oidc_api.seen) == 5  # 2 + 1 (retry) from the first client, then 1 + exactly one retry


def _always_revoked(api: ExternalApi):  # type: ignore[no-untyped-def]
    async def check(token: str) -> dict[str, object]:
        api.revoked.add(token)
        raise InvalidClient("revoked")

    return check


def test_concurrent_async_callers_share_one_fetch(sources: Sources, oidc_api: ExternalApi) -> None:
    async def calls() -> list[int]:
        async with httpx.AsyncClient(auth=EgressAuth(sources())) as client:
            responses = await asyncio.gather(*(client.get(f"{oidc_api.url}/stock/w{i}") for i in range(8)))
        return [r.status_code for r in responses]

    assert asyncio.run(calls()) == [200] * 8
    assert len(oidc_api.tokens()) == 1


def test_token_refreshed_shortly_before_expiry(sources: Sources, oidc_api: ExternalApi) -> None:
    now = [1_000_000_000.0]
    tokens = sources(refresh_margin=30.0, clock=lambda: now[0])
    first = tokens.get()
    assert first.expires_at == now[0] + 300
    now[0] += 260
    assert tokens.get().value == first.value
    now[0] += 15  # 25 s left: inside the margin
    assert tokens.get().value != first.value


def test_unknown_key_is_invalid_client_and_nothing_leaks(sources: Sources) -> None:
    tokens = sources(key=SigningKey.generate("ES256"))
    with pytest.raises(InvalidClient) as info:
        tokens.get()
    assert "eyJ" not in str(info.value)
