"""SPIFFE Workload API JWT-SVIDs, against a Workload API server on a real unix socket."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from spiffe._proto import workload_pb2

from txtoken.credentials import SpiffeJwtSource
from txtoken.errors import ConfigurationError, CredentialUnavailable
from txtoken.keys import SigningKey

from .fakes import Clock, FakeWorkloadApi, claims_of

TTS = "https://tts.shop.example"


def test_fetches_a_jwt_svid_for_the_audience(workload_api: FakeWorkloadApi, issuer_key: SigningKey) -> None:
    with SpiffeJwtSource(TTS, socket=workload_api.address) as source:
        credential = source.get()
    claims = claims_of(credential.value, issuer_key)
    assert claims["sub"] == FakeWorkloadApi.spiffe_id
    assert claims["aud"] == [TTS]
    assert credential.expires_at == claims["exp"]


def test_socket_comes_from_spiffe_endpoint_socket(workload_api: FakeWorkloadApi, issuer_key: SigningKey) -> None:
    with SpiffeJwtSource(TTS, environ={"SPIFFE_ENDPOINT_SOCKET": workload_api.address}) as source:
        assert claims_of(source.get().value, issuer_key)["aud"] == [TTS]


def test_cached_per_audience(workload_api: FakeWorkloadApi, issuer_key: SigningKey) -> None:
    with SpiffeJwtSource(TTS, socket=workload_api.address) as source:
        for_tts = source.get()
        for_other = source.get("spiffe://example.org/ns/shop/sa/payments")
        assert source.get() == for_tts
        assert source.get("spiffe://example.org/ns/shop/sa/payments") == for_other
    assert claims_of(for_other.value, issuer_key)["aud"] == ["spiffe://example.org/ns/shop/sa/payments"]
    assert workload_api.fetches == {TTS: 1, "spiffe://example.org/ns/shop/sa/payments": 1}


def test_refreshed_shortly_before_expiry(workload_api: FakeWorkloadApi, clock: Clock) -> None:
    workload_api.lifetime = 300
    with SpiffeJwtSource(TTS, socket=workload_api.address, refresh_margin=30, clock=clock) as source:
        first = source.get()
        clock.advance(269)
        assert source.get() == first
        assert workload_api.fetches[TTS] == 1
        clock.advance(2)  # 29 s before expiry
        second = source.get()
    assert second != first
    assert second.expires_at is not None and second.expires_at > clock() + 290
    assert workload_api.fetches[TTS] == 2


@pytest.mark.anyio
async def test_async_fetch_runs_off_the_event_loop(workload_api: FakeWorkloadApi) -> None:
    workload_api.delay = 0.2
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    with SpiffeJwtSource(TTS, socket=workload_api.address) as source:
        results = await asyncio.gather(*(source.aget() for _ in range(100)))
    tick_task.cancel()
    assert len({r.value for r in results}) == 1
    assert workload_api.fetches[TTS] == 1
    assert ticks >= 10, "the event loop was blocked during the Workload API call"


def test_concurrent_threads_trigger_one_fetch(workload_api: FakeWorkloadApi) -> None:
    workload_api.delay = 0.1
    with SpiffeJwtSource(TTS, socket=workload_api.address) as source, ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(lambda _: source.get(), range(48)))
    assert len({r.value for r in results}) == 1
    assert workload_api.fetches[TTS] == 1


def test_server_down_is_a_clear_error(workload_api: FakeWorkloadApi) -> None:
    with SpiffeJwtSource(TTS, socket=workload_api.address, timeout=2) as source:
        source.get()
        workload_api.stop()
        with pytest.raises(CredentialUnavailable, match="unavailable .*SPIFFE agent running") as info:
            source.get("another-audience")
    assert workload_api.address in str(info.value)


def test_server_back_up_is_used_again(issuer_key: SigningKey, clock: Clock) -> None:
    server = FakeWorkloadApi(issuer_key, clock=clock).start()
    try:
        with SpiffeJwtSource(TTS, socket=server.address) as source:
            server.stop()
            with pytest.raises(CredentialUnavailable):
                source.get()
            server.start()
            assert source.get().value
    finally:
        server.close()


def test_missing_socket_file_is_a_clear_error(workload_api: FakeWorkloadApi) -> None:
    workload_api.close()
    with pytest.raises(CredentialUnavailable, match="does not exist") as info:
        SpiffeJwtSource(TTS, socket=workload_api.address).get()
    assert workload_api.socket_path in str(info.value)


def test_missing_spiffe_endpoint_socket_names_the_variable() -> None:
    with pytest.raises(CredentialUnavailable, match="set SPIFFE_ENDPOINT_SOCKET"):
        SpiffeJwtSource(TTS, environ={}).get()


def test_server_enforces_the_workload_api_security_header(workload_api: FakeWorkloadApi) -> None:
    """The test server behaves as the SPIFFE Workload Endpoint spec says; py-spiffe sends the header."""
    with grpc.insecure_channel(f"unix:{workload_api.socket_path}") as channel:
        fetch = channel.unary_unary(
            "/SpiffeWorkloadAPI/FetchJWTSVID",
            request_serializer=workload_pb2.JWTSVIDRequest.SerializeToString,
            response_deserializer=workload_pb2.JWTSVIDResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as info:
            fetch(workload_pb2.JWTSVIDRequest(audience=[TTS]), timeout=5)
        assert isinstance(info.value, grpc.Call)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        answer = fetch(workload_pb2.JWTSVIDRequest(audience=[TTS]), metadata=[("workload.spiffe.io", "true")])
        assert answer.svids[0].spiffe_id == FakeWorkloadApi.spiffe_id
    assert workload_api.total == 1


def test_svid_never_in_repr_errors_or_logs(workload_api: FakeWorkloadApi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with SpiffeJwtSource(TTS, socket=workload_api.address) as source:
        credential = source.get()
        workload_api.stop()
        with pytest.raises(CredentialUnavailable) as info:
            source.get("other")
    assert credential.value not in repr(source) + repr(credential) + str(info.value) + caplog.text


def test_empty_audience_is_refused(workload_api: FakeWorkloadApi) -> None:
    with pytest.raises(ConfigurationError):
        SpiffeJwtSource("", socket=workload_api.address)
    with SpiffeJwtSource(TTS, socket=workload_api.address) as source, pytest.raises(ConfigurationError):
        source.get("")


def test_tcp_address_is_refused_with_the_reason() -> None:
    with pytest.raises(CredentialUnavailable, match="unix sockets only"):
        SpiffeJwtSource(TTS, socket="tcp://127.0.0.1:8081").get()


def test_without_py_spiffe_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "spiffe", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'txtoken[spiffe]'")):
        SpiffeJwtSource(TTS, socket="unix:///run/spire/agent.sock")
