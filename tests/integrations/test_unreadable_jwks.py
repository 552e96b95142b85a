"""A JWKS endpoint that answers 200 with a document no parser can read is a failed fetch (issue 10): the last good keys
stay in use, and without any a request is refused as ``keys_unavailable`` (503 / UNAVAILABLE), never a crash."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from txtoken import RemoteJwksKeySource, TxnTokenVerifier

from ..conftest import RunningServer
from .asgi_apps import app
from .conftest import TRUST_DOMAIN, Issuer
from .grpc_services import UNARY, running_server
from .test_asgi import assert_refusal
from .test_grpc_server import SERVER_KINDS, assert_refused, interceptor, refusal

Serve = Callable[..., RunningServer]
#: Nested far deeper than Python's recursion limit: ``json.loads`` raises RecursionError on it.
NESTED = b'{"keys": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"


@dataclass
class Endpoint:
    """A JWKS endpoint that serves the issuer's keys until ``nested`` is set, then deeply nested JSON with 200."""

    jwks: bytes
    nested: bool = True

    async def serve(self, request: Request) -> Response:
        return Response(NESTED if self.nested else self.jwks, media_type="application/json")


def _verifier(serve: Serve, issuer: Issuer, *, nested: bool) -> tuple[Endpoint, TxnTokenVerifier]:
    endpoint = Endpoint(json.dumps(issuer.keys.public_jwks()).encode(), nested)
    server = serve(Starlette(routes=[Route("/jwks", endpoint.serve)]))
    source = RemoteJwksKeySource(f"{server.url}/jwks", allow_http=True, ttl=0.001, min_ttl=0)
    return endpoint, TxnTokenVerifier(source, trust_domain=TRUST_DOMAIN, cache_size=0)


@pytest.mark.anyio
async def test_nested_jwks_through_the_middleware_is_503_not_a_plain_text_500(
    serve: Serve, issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    """issue 10: a JWKS endpoint answering 200 with deeply nested JSON made the middleware answer a plain-text 500
    with a traceback in the log."""
    _, verifier = _verifier(serve, issuer, nested=True)
    server = serve(app(verifier))
    token = issuer.mint()
    with caplog.at_level(logging.WARNING):
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.get("/whoami", headers={"Txn-Token": token})
    assert_refusal(response, 503, "keys_unavailable", token)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    warnings = [r.getMessage() for r in caplog.records if r.name == "txtoken.keysource"]
    assert warnings and "JWKS is not valid JSON" in warnings[0]


@pytest.mark.anyio
async def test_nested_jwks_after_good_keys_keeps_the_last_good_keys(serve: Serve, issuer: Issuer) -> None:
    endpoint, verifier = _verifier(serve, issuer, nested=False)
    server = serve(app(verifier))
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/whoami", headers={"Txn-Token": issuer.mint()})).status_code == 200
        endpoint.nested = True  # every lookup from now on refreshes (ttl 1 ms) and gets the nested document
        for _ in range(3):
            assert (await client.get("/whoami", headers={"Txn-Token": issuer.mint()})).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_nested_jwks_at_the_grpc_server_is_unavailable(serve: Serve, issuer: Issuer, kind: str) -> None:
    """issue 10: the sync gRPC server answered UNKNOWN with "maximum recursion depth exceeded" in its details."""
    _, verifier = _verifier(serve, issuer, nested=True)
    async with running_server(kind, [interceptor(kind, verifier)]) as target:  # type: ignore[arg-type]
        error = await refusal(target, UNARY, {}, [("txn-token", issuer.mint())])
    assert_refused(error, grpc.StatusCode.UNAVAILABLE, "keys_unavailable", None)
    assert "recursion" not in (error.details() or "").lower()
