"""Egress with the workload's platform credential as an RFC 7523 JWT bearer grant and as an RFC 8693 subject token,
against the RFC stand-in authorization server of another domain (see standin_as.py), sync and async."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from txtoken.credentials import FileCredentialSource
from txtoken.credentials.external import ExternalTokenSource, JwtBearerGrant, TokenExchangeGrant
from txtoken.errors import TokenServiceError
from txtoken.keys import KeySet
from txtoken.keysource import StaticKeySource
from txtoken.mint import encode_jws
from txtoken_httpx import EgressAuth

from ..conftest import RunningServer
from .conftest import ExternalApi
from .standin_as import ISSUER, StandInAs

PARTNER_API = "https://api.partner.example"


class Partner:
    def __init__(self, platform: KeySet) -> None:
        self.standin = StandInAs(StaticKeySource(platform.verification_keys()))
        self.servers: list[RunningServer] = []

        async def check(token: str) -> dict[str, Any]:
            issued = self.standin.issued.get(token)
            if issued is None:
                raise TokenServiceError("unknown token")
            return issued

        self.api = ExternalApi(check)
        self.as_url = self._serve(self.standin.app())
        self.api.url = self._serve(self.api.app())

    def _serve(self, app: Any) -> str:
        self.servers.append(RunningServer(app).start())
        return self.servers[-1].url


@pytest.fixture
def platform() -> KeySet:
    return KeySet.generate("ES256")


@pytest.fixture
def partner(platform: KeySet) -> Iterator[Partner]:
    partner = Partner(platform)
    yield partner
    for server in partner.servers:
        server.stop()


def _projected_token(platform: KeySet, path: Path, *, aud: str = ISSUER) -> FileCredentialSource:
    """The workload's platform credential as Kubernetes projects it: a file, audience = the partner's AS."""
    now = int(time.time())
    claims = {
        "iss": "https://kubernetes.default.svc",
        "sub": "system:serviceaccount:shop:orders",
        "aud": [aud],
        "iat": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
    }
    path.write_text(encode_jws(claims, platform.active, typ="JWT"), encoding="utf-8")
    return FileCredentialSource(path)


def test_jwt_bearer_grant_rfc7523_2_1(platform: KeySet, partner: Partner, tmp_path: Path) -> None:
    grant = JwtBearerGrant(_projected_token(platform, tmp_path / "token"), scope="inventory.read")
    with (
        ExternalTokenSource(f"{partner.as_url}/token", grant) as tokens,
        httpx.Client(auth=EgressAuth(tokens)) as client,
    ):
        response = client.get(f"{partner.api.url}/stock/widget", headers={"Txn-Token": "never.leaves.td"})
    assert response.status_code == 200, response.text
    assert response.json()["sub"] == "system:serviceaccount:shop:orders"
    assert partner.standin.requests == [
        {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "scope": "inventory.read"}
    ]
    assert "txn-token" not in partner.api.seen[0]["headers"]


def test_token_exchange_rfc8693_platform_credential_as_subject_token(
    platform: KeySet, partner: Partner, tmp_path: Path
) -> None:
    grant = TokenExchangeGrant(_projected_token(platform, tmp_path / "token"), audience=PARTNER_API)

    async def call() -> httpx.Response:
        with ExternalTokenSource(f"{partner.as_url}/token", grant) as tokens:
            async with httpx.AsyncClient(auth=EgressAuth(tokens)) as client:
                first, second = await asyncio.gather(
                    client.get(f"{partner.api.url}/stock/a"), client.get(f"{partner.api.url}/stock/b")
                )
                assert second.status_code == 200
                return first

    response = asyncio.run(call())
    assert response.status_code == 200, response.text
    assert len(partner.standin.requests) == 1  # one fetch for both concurrent calls
    issued = partner.standin.issued[next(iter(partner.api.tokens()))]
    assert issued["aud"] == PARTNER_API


def test_assertion_for_another_audience_is_refused_without_leaking_it(
    platform: KeySet, partner: Partner, tmp_path: Path
) -> None:
    """RFC 7523 §3: the AS rejects a JWT that does not name it as audience; the error carries no token."""
    credential = _projected_token(platform, tmp_path / "token", aud="https://tts.shop.example")
    with (
        ExternalTokenSource(f"{partner.as_url}/token", JwtBearerGrant(credential)) as tokens,
        pytest.raises(TokenServiceError) as info,
    ):
        tokens.get()
    assert "invalid_grant" in str(info.value)
    assert credential.get().value not in str(info.value)
