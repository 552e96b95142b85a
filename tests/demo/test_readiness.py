"""The demo services that verify Txn-Tokens fetch the TTS's keys at start and are ready only once they hold them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service_mesh_demo import payments
from service_mesh_demo.common import DemoEnv
from service_mesh_demo.topology import TRUST_DOMAIN
from txtoken.keys import KeySet

from ..conftest import RunningServer


class Jwks:
    """A TTS's JWKS endpoint that is down until ``up``; ``requests`` counts what reached it."""

    def __init__(self, *, up: bool) -> None:
        self.keys = KeySet.generate()
        self.up = up
        self.requests = 0

    async def serve(self, request: Request) -> Response:
        self.requests += 1
        if not self.up:
            return JSONResponse({"error": "starting"}, status_code=503)
        return JSONResponse(self.keys.public_jwks())


def _payments(serve: Callable[..., RunningServer], jwks: Jwks, tmp_path: Path) -> RunningServer:
    tts = serve(Starlette(routes=[Route("/.well-known/jwks.json", jwks.serve)]))
    urls = {"tts": tts.url, "gateway": "http://127.0.0.1:9"}
    env = DemoEnv("payments", TRUST_DOMAIN, "127.0.0.1", 0, tmp_path, urls, None)
    return serve(payments.app(env))


def test_a_verifying_service_holds_the_keys_before_its_first_request(
    serve: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """issue 10: demo services fetched the TTS's keys on their first request (the first purchase took about 250 ms
    at the gateway); they now fetch them at start."""
    jwks = Jwks(up=True)
    server = _payments(serve, jwks, tmp_path)
    assert jwks.requests == 1  # fetched during start-up, before any request
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert jwks.requests == 1


def test_a_verifying_service_is_not_ready_until_it_has_the_keys(
    serve: Callable[..., RunningServer], tmp_path: Path
) -> None:
    jwks = Jwks(up=False)
    server = _payments(serve, jwks, tmp_path)  # starts anyway: the TTS may come up later
    not_ready = httpx.get(f"{server.url}/healthz")
    assert not_ready.status_code == 503 and not_ready.json() == {"status": "waiting for the TTS's keys"}
    jwks.up = True
    assert httpx.get(f"{server.url}/healthz").status_code == 200  # the probe fetched them
