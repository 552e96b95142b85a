"""Issuance over a real uvicorn server, driven by raw HTTP and by the client."""

from __future__ import annotations

from typing import Any

import pytest

from txtoken.claims import TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_TXN_TOKEN
from txtoken.client import AsyncTokenServiceClient

from .conftest import GATEWAY, IDENTIFIER, TRUST_DOMAIN, StartTts, Tts, carries


def test_raw_http_exchange_returns_a_verifiable_txn_token(tts: Tts) -> None:
    response = tts.post(
        tts.form(
            scope="trade.stocks",
            request_context='{"req_ip": "69.151.72.123", "authn": "face"}',
            request_details='{"action": "BUY", "ticker": "MSFT", "quantity": "100"}',
        )
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "N_A"
    assert body["issued_token_type"] == TOKEN_TYPE_TXN_TOKEN
    assert body["expires_in"] == 120
    assert "scope" not in body  # identical to the requested scope
    assert "refresh_token" not in body
    claims = tts.verifier().verify(body["access_token"]).claims
    assert claims.sub == "user:alice"
    assert claims.aud == TRUST_DOMAIN
    assert claims.iss == IDENTIFIER
    assert claims.req_wl == GATEWAY
    assert claims.scope == "trade.stocks"
    assert claims.rctx == {"req_ip": "69.151.72.123", "authn": "face"}
    assert claims.tctx == {"action": "BUY", "ticker": "MSFT", "quantity": "100"}
    assert claims.exp - claims.iat == 120


def test_response_scope_is_sent_when_it_differs_from_the_request(tts: Tts) -> None:
    body = tts.post(tts.form(scope="trade.read trade.read")).json()
    assert body["scope"] == "trade.read"


def test_client_exchange(tts: Tts) -> None:
    with tts.client() as client:
        response = client.exchange(
            subject_token=tts.platform.access_token(),
            subject_token_type=TOKEN_TYPE_ACCESS_TOKEN,
            scope="trade.read",
            request_details={"action": "SELL"},
        )
    assert response.scope == "trade.read"
    assert response.expires_in == 120
    assert response.access_token not in repr(response)
    verified = tts.verifier().verify(response.access_token)
    assert verified.tctx == {"action": "SELL"}


@pytest.mark.anyio
async def test_async_client_exchange_and_replace(tts: Tts) -> None:
    async with AsyncTokenServiceClient(
        tts.token_endpoint, credential=tts.gateway_assertion, trust_domain=TRUST_DOMAIN
    ) as client:
        first = await client.exchange(
            subject_token=tts.platform.access_token(), subject_token_type=TOKEN_TYPE_ACCESS_TOKEN, scope="trade.stocks"
        )
        second = await client.replace(first.access_token, request_details={"note": "added"})
    verifier = tts.verifier()
    one, two = await verifier.averify(first.access_token), await verifier.averify(second.access_token)
    assert two.txn == one.txn
    assert two.scopes == one.scopes == {"trade.stocks"}
    assert two.tctx == {"note": "added"}


def test_subject_token_is_never_embedded(tts: Tts) -> None:
    """§13.4: the Txn-Token MUST NOT contain the access token presented."""
    subject = tts.platform.access_token()
    token = tts.post(tts.form(subject_token=subject)).json()["access_token"]
    assert not carries(token, subject)  # searched in the decoded claims (issue 10: not in the base64url text)


def test_short_lifetime_cap_is_honoured(start_tts: StartTts) -> None:
    def short(data: dict[str, Any]) -> None:
        data["lifetime"] = 45
        data["max_lifetime"] = 60

    tts = start_tts(short)
    claims = tts.verifier().verify(tts.issue()).claims
    assert claims.exp - claims.iat == 45
