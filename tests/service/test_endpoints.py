"""The JWKS, metadata, health and readiness endpoints."""

from __future__ import annotations

import httpx

from txtoken.claims import GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_SELF_SIGNED, TOKEN_TYPE_TXN_TOKEN

from .conftest import IDENTIFIER, TRUST_DOMAIN, StartTts, Tts


def test_jwks_publishes_public_keys_only(tts: Tts) -> None:
    response = httpx.get(f"{tts.url}/.well-known/jwks.json")
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert [k["kid"] for k in keys] == [tts.service.keystore.current().active.kid]
    assert all("d" not in k and k["use"] == "sig" for k in keys)
    assert "max-age" in response.headers["cache-control"]


def test_metadata_document(tts: Tts) -> None:
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/txn-token-service"):
        body = httpx.get(f"{tts.url}{path}").json()
        assert body["issuer"] == IDENTIFIER
        assert body["token_endpoint"] == tts.token_endpoint
        assert body["jwks_uri"] == f"{tts.url}/.well-known/jwks.json"
        assert body["grant_types_supported"] == [GRANT_TYPE_TOKEN_EXCHANGE]
        assert body["requested_token_types_supported"] == [TOKEN_TYPE_TXN_TOKEN]
        assert TOKEN_TYPE_SELF_SIGNED in body["subject_token_types_supported"]
        assert body["txn_token_signing_alg_values_supported"] == ["ES256"]
        assert TRUST_DOMAIN in body["trust_domains"]


def test_metadata_uses_the_configured_public_url(start_tts: StartTts) -> None:
    def public(data: dict[str, object]) -> None:
        data["public_url"] = "https://tts.td.example/"

    tts = start_tts(public)
    body = httpx.get(f"{tts.url}/.well-known/oauth-authorization-server").json()
    assert body["token_endpoint"] == "https://tts.td.example/token"
    assert body["jwks_uri"] == "https://tts.td.example/.well-known/jwks.json"


def test_health_and_readiness(tts: Tts) -> None:
    assert httpx.get(f"{tts.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{tts.url}/readyz").json() == {"status": "ready"}


def test_wrong_methods_are_not_served(tts: Tts) -> None:
    assert httpx.get(tts.token_endpoint).status_code == 405
    assert httpx.post(f"{tts.url}/.well-known/jwks.json").status_code == 405
