"""Instance-metadata identity tokens, against GCP- and Azure-style metadata servers on loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from txtoken.credentials import MetadataIdentitySource
from txtoken.errors import ConfigurationError, CredentialUnavailable
from txtoken.keys import SigningKey

from ..conftest import RunningServer
from .fakes import AZURE_TOKEN_PATH, GCP_IDENTITY_PATH, Clock, FakeAzureImds, FakeGcpMetadata, claims_of

TTS = "https://tts.shop.example"
Serve = Callable[..., RunningServer]


@pytest.fixture
def gcp(issuer_key: SigningKey, clock: Clock) -> FakeGcpMetadata:
    return FakeGcpMetadata(issuer_key, clock=clock)


def test_identity_token_for_the_audience(gcp: FakeGcpMetadata, serve: Serve, issuer_key: SigningKey) -> None:
    url = serve(gcp.app).url + GCP_IDENTITY_PATH
    source = MetadataIdentitySource(TTS, url=url)
    credential = source.get()
    claims = claims_of(credential.value, issuer_key)
    assert (claims["iss"], claims["aud"]) == (FakeGcpMetadata.issuer, TTS)
    assert credential.expires_at == claims["exp"]
    other = source.get("https://other.example")
    assert claims_of(other.value, issuer_key)["aud"] == "https://other.example"


def test_cached_per_audience_and_refreshed_before_expiry(gcp: FakeGcpMetadata, serve: Serve, clock: Clock) -> None:
    gcp.lifetime = 3600
    source = MetadataIdentitySource(TTS, url=serve(gcp.app).url + GCP_IDENTITY_PATH, refresh_margin=300, clock=clock)
    first = source.get()
    source.get("https://other.example")
    clock.advance(3299)
    assert source.get() == first
    assert gcp.fetches == {TTS: 1, "https://other.example": 1}
    clock.advance(2)
    assert source.get() != first
    assert gcp.fetches[TTS] == 2


def test_required_header_is_sent_and_enforced(gcp: FakeGcpMetadata, serve: Serve) -> None:
    url = serve(gcp.app).url + GCP_IDENTITY_PATH
    assert httpx.get(url, params={"audience": TTS}).status_code == 403
    with pytest.raises(CredentialUnavailable, match=r"HTTP 403: the service requires the request headers"):
        MetadataIdentitySource(TTS, url=url, headers={}).get()
    assert MetadataIdentitySource(TTS, url=url).get().value
    assert gcp.total == 1


def test_answer_without_the_provider_header_is_not_trusted(gcp: FakeGcpMetadata, serve: Serve) -> None:
    source = MetadataIdentitySource(TTS, url=serve(gcp.app).url + "/impostor")
    with pytest.raises(CredentialUnavailable, match="without the header Metadata-Flavor: Google"):
        source.get()


def test_redirect_is_not_followed(gcp: FakeGcpMetadata, serve: Serve) -> None:
    source = MetadataIdentitySource(TTS, url=serve(gcp.app).url + "/moved")
    with pytest.raises(CredentialUnavailable, match=r"redirect \(302\), which is not followed"):
        source.get()
    assert gcp.total == 0


def test_short_timeout(serve: Serve) -> None:
    async def stall(request: Request) -> PlainTextResponse:
        await asyncio.sleep(0.5)
        return PlainTextResponse("late")

    url = serve(Starlette(routes=[Route("/identity", stall)])).url + "/identity"
    with pytest.raises(CredentialUnavailable, match=r"did not answer within 0.2 s"):
        MetadataIdentitySource(TTS, url=url, timeout=0.2).get()


def test_nothing_listening_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(
        CredentialUnavailable, match=rf"metadata service at http://127.0.0.1:{port}/x cannot be reached"
    ):
        MetadataIdentitySource(TTS, url=f"http://127.0.0.1:{port}/x").get()


def test_concurrent_threads_trigger_one_fetch(gcp: FakeGcpMetadata, serve: Serve) -> None:
    gcp.delay = 0.1
    source = MetadataIdentitySource(TTS, url=serve(gcp.app).url + GCP_IDENTITY_PATH)
    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(lambda _: source.get(), range(48)))
    assert len({r.value for r in results}) == 1
    assert gcp.fetches == {TTS: 1}


@pytest.mark.anyio
async def test_concurrent_tasks_trigger_one_fetch(gcp: FakeGcpMetadata, serve: Serve) -> None:
    gcp.delay = 0.1
    source = MetadataIdentitySource(TTS, url=serve(gcp.app).url + GCP_IDENTITY_PATH)
    results = await asyncio.gather(*(source.aget() for _ in range(100)))
    assert len({r.value for r in results}) == 1
    assert gcp.fetches == {TTS: 1}


def test_azure_imds(serve: Serve, issuer_key: SigningKey, clock: Clock) -> None:
    imds = FakeAzureImds(issuer_key, clock=clock)
    url = serve(imds.app).url + AZURE_TOKEN_PATH
    credential = MetadataIdentitySource.azure("api://tts.shop.example", url=url).get()
    claims = claims_of(credential.value, issuer_key)
    assert (claims["iss"], claims["aud"]) == (FakeAzureImds.issuer, "api://tts.shop.example")
    assert imds.fetches == {"api://tts.shop.example": 1}
    with pytest.raises(CredentialUnavailable, match="HTTP 400"):
        MetadataIdentitySource("api://tts.shop.example", url=url, headers={}, response_headers={}).get()


def test_token_never_in_repr_errors_or_logs(
    issuer_key: SigningKey, serve: Serve, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gcp = FakeGcpMetadata(issuer_key)  # on the real clock
    gcp.lifetime = 100
    source = MetadataIdentitySource(TTS, url=serve(gcp.app).url + GCP_IDENTITY_PATH, clock=clock)
    credential = source.get()
    clock.advance(200)  # for the source, the server now issues tokens that are already expired
    with pytest.raises(CredentialUnavailable, match="expired") as info:
        source.get()
    assert credential.value not in repr(source) + repr(credential) + str(info.value) + caplog.text


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        MetadataIdentitySource("")
    with pytest.raises(ConfigurationError):
        MetadataIdentitySource(TTS, url="file:///etc/passwd")
    with pytest.raises(ConfigurationError):
        MetadataIdentitySource(TTS, timeout=0)
