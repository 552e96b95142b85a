"""A first end-to-end check of the core over a real server: mint, publish the JWKS, verify remotely."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from txtoken import KeySet, RemoteJwksKeySource, TxnTokenMinter, TxnTokenVerifier

from ..conftest import RunningServer


@pytest.mark.anyio
async def test_token_verifies_against_jwks_served_over_http(serve: Callable[..., RunningServer]) -> None:
    keys = KeySet.generate()

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(keys.public_jwks())

    server = serve(Starlette(routes=[Route("/jwks", jwks)]))
    token = TxnTokenMinter(keys, trust_domain="td.example").mint(sub="alice", scope="read", req_wl="gw")
    verifier = TxnTokenVerifier(RemoteJwksKeySource(f"{server.url}/jwks", allow_http=True), trust_domain="td.example")
    verified = await verifier.averify(token)
    assert verified.sub == "alice"
    assert verifier.verify(token).txn == verified.txn
