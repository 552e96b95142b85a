"""How a Txn-Token field is read, the same for every carrier (``txtoken.carrier``): an ASGI app on a real uvicorn
server and the sync and aio gRPC servers."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import httpx
import pytest

from ..conftest import RunningServer
from .asgi_apps import app
from .conftest import Issuer
from .grpc_services import UNARY, ServerKind, running_server
from .test_asgi import assert_refusal
from .test_grpc_server import SERVER_KINDS, assert_refused, call, interceptor, refusal

Serve = Callable[..., RunningServer]

# (name, how the field's values are built from two tokens, the refusal code)
DUPLICATED = [
    ("comma-joined", lambda one, two: [f"{one}, {two}"], "token_duplicated"),
    ("comma-joined without space", lambda one, two: [f"{one},{two}"], "token_duplicated"),
    ("the same token comma-joined", lambda one, two: [f"{one}, {one}"], "token_duplicated"),
    ("trailing comma", lambda one, two: [f"{one},"], "token_duplicated"),
]
MISSING = [
    ("empty", lambda one, two: [""], "token_missing"),
    ("only commas", lambda one, two: [",,"], "token_missing"),
]
CASES = DUPLICATED + MISSING


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "values", "code"), CASES, ids=[c[0] for c in CASES])
async def test_asgi_field_with_two_joined_tokens_or_none(
    serve: Serve, issuer: Issuer, name: str, values: Callable[[str, str], list[str]], code: str
) -> None:
    """issue 10: a Txn-Token field holding two comma-joined tokens (what fetch/undici sends for two values) was
    token_malformed, not token_duplicated; an empty Txn-Token field was token_malformed, not token_missing."""
    one, two = issuer.mint(), issuer.mint(sub="mallory")
    server = serve(app(issuer.verifier()))
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.get("/whoami", headers=[("Txn-Token", v) for v in values(one, two)])
    assert_refusal(response, 401, code, one)
    assert two not in response.text


@pytest.mark.anyio
@pytest.mark.parametrize("kind", SERVER_KINDS)
@pytest.mark.parametrize(("name", "values", "code"), CASES, ids=[c[0] for c in CASES])
async def test_grpc_metadata_with_two_joined_tokens_or_none(
    issuer: Issuer, kind: ServerKind, name: str, values: Callable[[str, str], list[str]], code: str
) -> None:
    """issue 10: the same for gRPC metadata: comma-joined tokens are token_duplicated, an empty entry token_missing."""
    one, two = issuer.mint(), issuer.mint(sub="mallory")
    async with running_server(kind, [interceptor(kind, issuer.verifier())]) as target:
        error = await refusal(target, UNARY, {}, [("txn-token", v) for v in values(one, two)])
    assert_refused(error, grpc.StatusCode.UNAUTHENTICATED, code, one)
    assert two not in (error.details() or "")


@pytest.mark.anyio
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_grpc_metadata_with_one_token_is_accepted(issuer: Issuer, kind: ServerKind) -> None:
    async with running_server(kind, [interceptor(kind, issuer.verifier())]) as target:
        token = issuer.mint()
        replies = await call(target, UNARY, {}, [("txn-token", token)])
    assert replies[0]["txn"] == issuer.verifier().verify(token).txn
