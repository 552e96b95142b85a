"""Fixtures of the egress tests: a REAL node-oidc-provider (npm ``oidc-provider``, installed into tests/egress/oidc by
the first test run or by .ci/run), the RFC stand-in authorization server, and the external APIs they protect."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from txtoken.errors import TxTokenError
from txtoken.keys import SigningKey
from txtoken.service import AccessTokenValidator, issuer_configs

from ..conftest import RunningServer
from ..gateway.processes import Process, free_port

OIDC_DIR = Path(__file__).parent / "oidc"
RESOURCE = "https://api.partner.example"
SCOPE = "inventory.read"
NODE = shutil.which("node")
NPM = shutil.which("npm")


def install_oidc_provider() -> None:
    """``npm ci`` of the pinned oidc-provider into tests/egress/oidc (once; node_modules is not in git)."""
    if (OIDC_DIR / "node_modules" / "oidc-provider" / "package.json").exists():
        return
    assert NPM is not None
    subprocess.run([NPM, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=OIDC_DIR, check=True, timeout=600)


@dataclass
class OpenIdProvider:
    issuer: str
    client_id: str
    client_key: SigningKey

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenIdProvider]:
    if NODE is None or NPM is None:
        pytest.skip("node and npm are not installed: the node-oidc-provider tests need them")
    install_oidc_provider()
    tmp = tmp_path_factory.mktemp("oidc")
    key = SigningKey.generate("ES256")
    client_id = "shop.example"  # the trust domain's identity, not an internal workload name (arch §3.8.1)
    config = {
        "client_id": client_id,
        "jwks": {"keys": [key.verification_key.to_jwk()]},
        "resource": RESOURCE,
        "scope": SCOPE,
        "ttl": 300,
    }
    (tmp / "config.json").write_text(json.dumps(config), encoding="utf-8")
    port = free_port()
    process = Process([NODE, str(OIDC_DIR / "server.mjs"), str(port), str(tmp / "config.json")], port, tmp / "op.log")
    yield OpenIdProvider(f"http://127.0.0.1:{port}", client_id, key)
    process.stop()


Check = Callable[[str], Awaitable[dict[str, Any]]]


@dataclass
class ExternalApi:
    """An API of another domain: checks the bearer token with ``check`` and records what each request carried."""

    check: Check
    seen: list[dict[str, Any]] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    url: str = ""

    def app(self) -> Starlette:
        async def resource(request: Request) -> Response:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            record: dict[str, Any] = {"headers": dict(request.headers), "token": token}
            self.seen.append(record)
            if scheme.lower() != "bearer" or token in self.revoked:
                return JSONResponse({"error": "invalid_token"}, status_code=401)
            try:
                claims = await self.check(token)
            except TxTokenError:
                return JSONResponse({"error": "invalid_token"}, status_code=401)
            record["sub"] = claims["sub"]
            return JSONResponse({"sub": claims["sub"], "body": (await request.body()).decode()})

        return Starlette(routes=[Route("/stock/{item}", resource, methods=["GET", "POST"])])

    def tokens(self) -> set[str]:
        return {r["token"] for r in self.seen}


@pytest.fixture
def oidc_api(oidc_provider: OpenIdProvider) -> Iterator[ExternalApi]:
    """The partner's API, accepting the OpenID Provider's RFC 9068 JWT access tokens (checked with txtoken's own
    access-token validation, the one the gateway uses)."""
    validator = AccessTokenValidator(
        issuer_configs(
            {
                "op": {
                    "kind": "oauth",
                    "issuer": oidc_provider.issuer,
                    "jwks_uri": f"{oidc_provider.issuer}/jwks",
                    "audiences": [RESOURCE],
                }
            }
        ),
        default_audience=RESOURCE,
    )

    async def check(token: str) -> dict[str, Any]:
        return dict((await validator.validate(token)).claims)

    api = ExternalApi(check)
    server = RunningServer(api.app()).start()
    api.url = server.url
    yield api
    server.stop()
