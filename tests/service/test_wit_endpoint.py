"""WIT issuance at the token service (``POST /wit``): authentication as for /token, proof of possession of the
workload's generated key, a WIT signed by the separate WIT key and published for verifiers; the credential layer
fetches it and refreshes it before expiry."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.core.conftest import FakeClock
from txtoken import KeySet, SigningKey
from txtoken.claims import CLIENT_ASSERTION_TYPE_JWT_BEARER
from txtoken.credentials import TokenServiceWitSource
from txtoken.errors import CredentialUnavailable
from txtoken.keysource import RemoteJwksKeySource
from txtoken.wimse import WitVerifier
from txtoken.wimse.proof import create_key_proof

from .conftest import CI, GATEWAY, IDENTIFIER, TRUST_DOMAIN, StartTts, Tts


@pytest.fixture
def wimse_tts(start_tts: StartTts, tmp_path: Path) -> Tts:
    KeySet.generate("ES256").save(tmp_path / "wit-keys" / "keys.json")

    def change(data: dict[str, Any]) -> None:
        data["wimse"] = {"trust_domain": TRUST_DOMAIN, "keys_dir": str(tmp_path / "wit-keys"), "wit_lifetime": 600}

    return start_tts(change)


def _verifier(tts: Tts) -> WitVerifier:
    anchors = RemoteJwksKeySource(f"{tts.url}/.well-known/wit-jwks.json", allow_http=True)
    return WitVerifier(anchors, trust_domain=TRUST_DOMAIN)


def _post(tts: Tts, **form: str | None) -> httpx.Response:
    base: dict[str, str | None] = {
        "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": tts.gateway_assertion(),
        "proof": create_key_proof(SigningKey.generate("ES256"), audience=IDENTIFIER),
    }
    base.update(form)
    return httpx.post(f"{tts.url}/wit", data={k: v for k, v in base.items() if v is not None})


def test_a_workload_gets_a_wit_for_its_identifier_and_key(wimse_tts: Tts) -> None:
    source = TokenServiceWitSource(
        f"{wimse_tts.url}/wit", credential=wimse_tts.gateway_assertion, audience=IDENTIFIER, allow_http=True
    )
    identity = source.get()
    assert identity.workload == GATEWAY
    verified = _verifier(wimse_tts).verify(identity.wit)
    assert verified.workload == GATEWAY
    assert verified.claims["iss"] == IDENTIFIER
    assert verified.claims["exp"] - verified.claims["iat"] == 600
    assert verified.key.to_jwk()["x"] == identity.key.verification_key.to_jwk()["x"]


def test_the_wit_key_is_separate_from_the_txn_token_keys_and_published(wimse_tts: Tts) -> None:
    wit_kids = {k["kid"] for k in httpx.get(f"{wimse_tts.url}/.well-known/wit-jwks.json").json()["keys"]}
    txn_kids = {k["kid"] for k in httpx.get(f"{wimse_tts.url}/.well-known/jwks.json").json()["keys"]}
    assert wit_kids and not wit_kids & txn_kids
    metadata = httpx.get(f"{wimse_tts.url}/.well-known/oauth-authorization-server").json()
    assert metadata["wit_endpoint"] == f"{wimse_tts.url}/wit"
    assert metadata["wit_jwks_uri"] == f"{wimse_tts.url}/.well-known/wit-jwks.json"


def test_the_endpoint_exists_only_when_configured(tts: Tts) -> None:
    assert httpx.post(f"{tts.url}/wit", data={"proof": "x"}).status_code in (404, 405)
    assert "wit_endpoint" not in httpx.get(f"{tts.url}/.well-known/oauth-authorization-server").json()


def test_a_wit_is_cached_and_refreshed_before_it_expires_with_a_new_key(wimse_tts: Tts) -> None:
    clock = FakeClock(time.time())
    source = TokenServiceWitSource(
        f"{wimse_tts.url}/wit",
        credential=wimse_tts.gateway_assertion,
        audience=IDENTIFIER,
        allow_http=True,
        refresh_margin=60,
        clock=clock,
    )
    first = source.get()
    assert source.get() is first and source.fetch_count == 1
    clock.advance(600 - 30)  # inside the 60 s refresh margin before exp (the TTS's clock may run a little ahead)
    second = source.get()
    assert source.fetch_count == 2 and second.wit != first.wit
    assert second.key.verification_key.to_jwk() != first.key.verification_key.to_jwk()


def test_without_client_authentication_the_request_is_refused(wimse_tts: Tts) -> None:
    response = _post(wimse_tts, client_assertion=None, client_assertion_type=None)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_without_a_proof_the_request_is_refused(wimse_tts: Tts) -> None:
    response = _post(wimse_tts, proof=None)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_a_proof_for_another_token_service_is_refused(wimse_tts: Tts) -> None:
    response = _post(wimse_tts, proof=create_key_proof(SigningKey.generate(), audience="https://other.example"))
    assert response.status_code == 400 and "wpt_invalid" in response.json()["error_description"]


def test_a_replayed_proof_is_refused(wimse_tts: Tts) -> None:
    proof = create_key_proof(SigningKey.generate(), audience=IDENTIFIER)
    assert _post(wimse_tts, proof=proof).status_code == 200
    response = _post(wimse_tts, proof=proof)
    assert response.status_code == 400 and "already used" in response.json()["error_description"]


def test_a_proof_not_signed_by_its_key_is_refused(wimse_tts: Tts) -> None:
    proof = create_key_proof(SigningKey.generate(), audience=IDENTIFIER)
    other = create_key_proof(SigningKey.generate(), audience=IDENTIFIER)
    forged = ".".join([*proof.split(".")[:2], other.split(".")[2]])
    response = _post(wimse_tts, proof=forged)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_a_proof_carrying_a_private_key_is_refused(wimse_tts: Tts) -> None:
    from txtoken.mint import encode_jws

    key = SigningKey.generate()
    now = int(time.time())
    claims = {"aud": IDENTIFIER, "iat": now, "exp": now + 30, "jti": "p1"}
    proof = encode_jws(claims, key, typ="wit-key-proof+jwt", headers={"jwk": key.to_private_jwk()})
    response = _post(wimse_tts, proof=proof)
    assert response.status_code == 400 and "wit_cnf_invalid" in response.json()["error_description"]


def test_a_workload_whose_id_is_not_a_workload_identifier_gets_no_wit(wimse_tts: Tts) -> None:
    token = wimse_tts.platform.github_token()
    response = _post(wimse_tts, client_assertion=token)
    assert response.status_code == 400 and response.json()["error"] == "unauthorized_client", CI


def test_the_credential_source_reports_a_refusal_without_details(wimse_tts: Tts) -> None:
    source = TokenServiceWitSource(
        f"{wimse_tts.url}/wit", credential=lambda: "not-a-jwt", audience=IDENTIFIER, allow_http=True
    )
    with pytest.raises(CredentialUnavailable, match=r"HTTP 401 \(invalid_client\)"):
        source.get()


def test_concurrent_callers_share_one_wit_request(wimse_tts: Tts) -> None:
    import threading

    source = TokenServiceWitSource(
        f"{wimse_tts.url}/wit", credential=wimse_tts.gateway_assertion, audience=IDENTIFIER, allow_http=True
    )
    barrier = threading.Barrier(8)
    seen: list[str] = []

    def get() -> None:
        barrier.wait(timeout=10)
        seen.append(source.get().wit)

    threads = [threading.Thread(target=get) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(seen) == 8 and len(set(seen)) == 1
    assert source.fetch_count == 1


@pytest.mark.anyio
async def test_asyncio_callers_share_one_wit_request_too(wimse_tts: Tts) -> None:
    import asyncio

    source = TokenServiceWitSource(
        f"{wimse_tts.url}/wit", credential=wimse_tts.gateway_assertion, audience=IDENTIFIER, allow_http=True
    )
    identities = await asyncio.gather(*(source.aget() for _ in range(8)))
    assert len({identity.wit for identity in identities}) == 1
    assert source.fetch_count == 1
