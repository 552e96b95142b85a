"""TxnTokenAuth with real httpx clients against real uvicorn servers: what is sent where, redirects included."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from txtoken import use_transaction
from txtoken.errors import ConfigurationError, NoTransaction
from txtoken_httpx import TxnTokenAuth

from ..conftest import RunningServer
from .conftest import Issuer

Serve = Callable[..., RunningServer]


async def echo(request: Request) -> JSONResponse:
    """What arrived: the Txn-Token headers (a test-only echo; a real service never returns a token)."""
    return JSONResponse({"tokens": request.headers.getlist("txn-token"), "path": request.url.path})


async def redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(request.query_params["to"], status_code=307)


@pytest.fixture
def servers(serve: Serve) -> tuple[str, str]:
    """Two origins on loopback (the same host, two ports)."""
    routes = [Route("/echo", echo), Route("/redirect", redirect)]
    return serve(Starlette(routes=routes)).url, serve(Starlette(routes=routes)).url


def trusted_auth(**options: Any) -> TxnTokenAuth:
    return TxnTokenAuth(trusted_hosts=["127.0.0.1", ".svc.cluster.local"], **options)


@pytest.mark.anyio
async def test_the_current_token_goes_to_trusted_hosts_only(issuer: Issuer, servers: tuple[str, str]) -> None:
    a, _ = servers
    untrusted = a.replace("127.0.0.1", "localhost")
    txn = issuer.verified()
    auth = trusted_auth()
    with use_transaction(txn):
        async with httpx.AsyncClient(auth=auth) as client:
            assert (await client.get(f"{a}/echo")).json()["tokens"] == [txn.token]
            assert (await client.get(f"{untrusted}/echo")).json()["tokens"] == []
        with httpx.Client(auth=auth) as sync_client:
            assert sync_client.get(f"{a}/echo").json()["tokens"] == [txn.token]
            assert sync_client.get(f"{untrusted}/echo").json()["tokens"] == []


def test_trusted_hosts_are_names_or_dot_suffixes() -> None:
    auth = trusted_auth()
    assert auth.trusts(httpx.URL("http://orders.svc.cluster.local:8080/x"))
    assert auth.trusts(httpx.URL("https://127.0.0.1/"))
    assert not auth.trusts(httpx.URL("http://svc.cluster.local.evil.example/"))
    assert not auth.trusts(httpx.URL("http://evilsvc.cluster.local/"))  # a suffix matches at a dot only
    with pytest.raises(ConfigurationError):
        TxnTokenAuth(trusted_hosts=[])


@pytest.mark.anyio
async def test_the_replacement_is_sent_while_it_is_current(issuer: Issuer, servers: tuple[str, str]) -> None:
    a, _ = servers
    original, replacement = issuer.verified(), issuer.verified(tctx={"step": 2})
    async with httpx.AsyncClient(auth=trusted_auth(), headers={"Txn-Token": "stale"}) as client:
        with use_transaction(original):
            with use_transaction(replacement):
                inside = (await client.get(f"{a}/echo")).json()["tokens"]
            after = (await client.get(f"{a}/echo")).json()["tokens"]
    assert inside == [replacement.token]
    assert after == [original.token]  # and a header already on the request never goes along


@pytest.mark.anyio
async def test_outside_a_transaction_it_raises_or_sends_nothing(servers: tuple[str, str]) -> None:
    a, _ = servers
    async with httpx.AsyncClient(auth=trusted_auth()) as client:
        with pytest.raises(NoTransaction):
            await client.get(f"{a}/echo")
    with httpx.Client(auth=trusted_auth(required=False)) as sync_client:
        assert sync_client.get(f"{a}/echo").json()["tokens"] == []


# -- redirects ----------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_followed_redirect_to_another_origin_drops_the_token(issuer: Issuer, servers: tuple[str, str]) -> None:
    a, b = servers
    txn = issuer.verified()
    auth = trusted_auth()
    with use_transaction(txn):
        async with httpx.AsyncClient(auth=auth, event_hooks=auth.async_event_hooks, follow_redirects=True) as client:
            other = (await client.get(f"{a}/redirect", params={"to": f"{b}/echo"})).json()
            same = (await client.get(f"{a}/redirect", params={"to": f"{a}/echo"})).json()
        with httpx.Client(auth=auth, event_hooks=auth.event_hooks, follow_redirects=True) as sync_client:
            sync_other = sync_client.get(f"{a}/redirect", params={"to": f"{b}/echo"}).json()
    assert other == sync_other == {"tokens": [], "path": "/echo"}
    assert same == {"tokens": [txn.token], "path": "/echo"}


@pytest.mark.anyio
async def test_redirect_followed_by_hand_drops_the_token(issuer: Issuer, servers: tuple[str, str]) -> None:
    a, b = servers
    with use_transaction(issuer.verified()):
        async with httpx.AsyncClient(auth=trusted_auth()) as client:
            first = await client.get(f"{a}/redirect", params={"to": f"{b}/echo"})
            assert first.status_code == 307 and first.next_request is not None
            followed = await client.send(first.next_request)
    assert followed.json() == {"tokens": [], "path": "/echo"}


@pytest.mark.anyio
async def test_without_the_guard_hooks_a_leak_across_origins_is_reported(
    issuer: Issuer, servers: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """httpx copies custom headers into followed redirects; the auth cannot stop it alone, so it says so loudly."""
    a, b = servers
    with use_transaction(issuer.verified()), caplog.at_level(logging.ERROR, logger="txtoken.httpx"):
        async with httpx.AsyncClient(auth=trusted_auth(), follow_redirects=True) as client:
            await client.get(f"{a}/redirect", params={"to": f"{b}/echo"})
            await client.get(f"{a}/redirect", params={"to": f"{a}/echo"})  # same origin: nothing to report
    assert [r.getMessage() for r in caplog.records] == [
        "a redirect carried the Txn-Token to another origin: install TxnTokenAuth.event_hooks"
    ]
