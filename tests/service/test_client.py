"""The TTS client against scripted servers: retries (connection errors and 5xx only), error mapping, response
checks, credentials (callables and credential sources), and no token in any error."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from txtoken.claims import CLIENT_ASSERTION_TYPE_JWT_BEARER, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_TXN_TOKEN
from txtoken.client import AsyncTokenServiceClient, TokenServiceClient
from txtoken.credentials import Credential
from txtoken.errors import (
    ConfigurationError,
    InvalidScope,
    TokenServiceError,
    TokenServiceUnavailable,
    UnauthorizedClient,
)

from ..conftest import RunningServer

OK = {
    "access_token": "issued.txn.token",
    "issued_token_type": TOKEN_TYPE_TXN_TOKEN,
    "token_type": "N_A",
    "expires_in": 60,
}


class Scripted:
    """A token endpoint that answers from a script and records each request's form."""

    def __init__(self, *answers: Response) -> None:
        self.answers = list(answers)
        self.forms: list[dict[str, str]] = []

    def app(self) -> Starlette:
        async def token(request: Request) -> Response:
            self.forms.append({k: str(v) for k, v in httpx.QueryParams((await request.body()).decode()).items()})
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

        return Starlette(routes=[Route("/token", token, methods=["POST"])])


Serve = Callable[..., RunningServer]


def _client(url: str, **kwargs: Any) -> TokenServiceClient:
    kwargs.setdefault("credential", lambda: "assertion.jwt.value")
    return TokenServiceClient(f"{url}/token", trust_domain="td.example", **kwargs)


def _exchange(client: TokenServiceClient, **kwargs: Any) -> Any:
    params = {"subject_token": "subject.jwt.value", "subject_token_type": TOKEN_TYPE_ACCESS_TOKEN, "scope": "read"}
    return client.exchange(**{**params, **kwargs})


def test_request_form_and_response(serve: Serve) -> None:
    script = Scripted(JSONResponse(OK))
    with _client(serve(script.app()).url) as client:
        response = _exchange(client, request_context={"req_ip": "192.0.2.1"}, request_details={"n": 1})
    assert response.access_token == "issued.txn.token"
    assert response.scope == "read"  # absent from the answer: identical to the request
    assert response.expires_in == 60
    form = script.forms[0]
    assert form["audience"] == "td.example"
    assert form["client_assertion"] == "assertion.jwt.value"
    assert form["client_assertion_type"] == CLIENT_ASSERTION_TYPE_JWT_BEARER
    assert form["request_context"] == '{"req_ip":"192.0.2.1"}'
    assert form["request_details"] == '{"n":1}'
    assert form["requested_token_type"] == TOKEN_TYPE_TXN_TOKEN


def test_retries_on_5xx_then_succeeds(serve: Serve) -> None:
    script = Scripted(PlainTextResponse("busy", status_code=503), PlainTextResponse("oops", 500), JSONResponse(OK))
    with _client(serve(script.app()).url, retries=2) as client:
        assert _exchange(client).access_token == "issued.txn.token"
    assert len(script.forms) == 3


def test_gives_up_after_the_retries_with_the_tts_error(serve: Serve) -> None:
    body = {"error": "temporarily_unavailable", "error_description": "keys of issuer unavailable"}
    script = Scripted(JSONResponse(body, status_code=503))
    with _client(serve(script.app()).url, retries=1) as client, pytest.raises(TokenServiceUnavailable):
        _exchange(client)
    assert len(script.forms) == 2


def test_no_retry_on_4xx(serve: Serve) -> None:
    script = Scripted(JSONResponse({"error": "invalid_scope", "error_description": "too wide"}, status_code=400))
    with _client(serve(script.app()).url, retries=3) as client, pytest.raises(InvalidScope) as caught:
        _exchange(client)
    assert len(script.forms) == 1
    assert caught.value.code == "invalid_scope"
    assert "too wide" in str(caught.value)


def test_retries_on_connection_errors(serve: Serve) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = _client(f"http://127.0.0.1:{port}", retries=2)
    attempts = []
    original = client._client.post

    def counting(*args: Any, **kwargs: Any) -> httpx.Response:
        attempts.append(1)
        return original(*args, **kwargs)

    client._client.post = counting  # type: ignore[method-assign]
    with client, pytest.raises(TokenServiceUnavailable, match="cannot be reached"):
        _exchange(client)
    assert len(attempts) == 3


def test_error_descriptions_never_carry_the_tokens(serve: Serve) -> None:
    echo = {"error": "unauthorized_client", "error_description": "bad subject.jwt.value from assertion.jwt.value"}
    script = Scripted(JSONResponse(echo, status_code=400))
    with _client(serve(script.app()).url) as client, pytest.raises(UnauthorizedClient) as caught:
        _exchange(client)
    assert "subject.jwt.value" not in str(caught.value)
    assert "assertion.jwt.value" not in str(caught.value)


@pytest.mark.parametrize(
    "answer",
    [
        {**OK, "refresh_token": "rt"},
        {**OK, "token_type": "Bearer"},
        {**OK, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"},
        {k: v for k, v in OK.items() if k != "access_token"},
        {**OK, "expires_in": "60"},
        ["not", "an", "object"],
    ],
    ids=["refresh token", "token_type", "issued_token_type", "no access_token", "expires_in string", "not an object"],
)
def test_non_conforming_success_responses_are_errors(serve: Serve, answer: Any) -> None:
    with _client(serve(Scripted(JSONResponse(answer)).app()).url) as client, pytest.raises(TokenServiceError):
        _exchange(client)


def test_non_json_error_is_a_token_service_error(serve: Serve) -> None:
    with (
        _client(serve(Scripted(PlainTextResponse("nope", 404)).app()).url) as client,
        pytest.raises(TokenServiceError, match="404"),
    ):
        _exchange(client)


def test_audience_is_required_somewhere() -> None:
    client = TokenServiceClient("http://127.0.0.1:9/token")
    with client, pytest.raises(ConfigurationError, match="audience"):
        _exchange(client)


def test_replace_rejects_a_non_token() -> None:
    with TokenServiceClient("http://127.0.0.1:9/token") as client, pytest.raises(ConfigurationError):
        client.replace("not-a-token")


class StaticSource:
    """A credential source (the protocol of txtoken.credentials)."""

    def __init__(self) -> None:
        self.calls = 0

    def get(self) -> Credential:
        self.calls += 1
        return Credential(f"source-assertion-{self.calls}")

    async def aget(self) -> Credential:
        return self.get()


def test_credential_source_is_asked_per_request(serve: Serve) -> None:
    script = Scripted(JSONResponse(OK))
    source = StaticSource()
    with _client(serve(script.app()).url, credential=source) as client:
        _exchange(client)
        _exchange(client)
    assert [f["client_assertion"] for f in script.forms] == ["source-assertion-1", "source-assertion-2"]


def test_without_credential_no_client_assertion_is_sent(serve: Serve) -> None:
    script = Scripted(JSONResponse(OK))
    with TokenServiceClient(f"{serve(script.app()).url}/token", trust_domain="td.example") as client:
        _exchange(client)
    assert "client_assertion" not in script.forms[0]


@pytest.mark.anyio
async def test_async_client_retries_maps_errors_and_uses_sources(serve: Serve) -> None:
    script = Scripted(PlainTextResponse("busy", 502), JSONResponse({"error": "invalid_scope"}, status_code=400))
    source = StaticSource()
    async with AsyncTokenServiceClient(
        f"{serve(script.app()).url}/token", credential=source, trust_domain="td.example", retries=2
    ) as client:
        with pytest.raises(InvalidScope):
            await client.exchange(subject_token="s.t.v", subject_token_type=TOKEN_TYPE_ACCESS_TOKEN, scope="read")
    # The source is asked on every attempt: a retry after a 5xx carries a new key-pair assertion (issue 10: the TTS
    # uses each jti once), or the same platform token again from a caching source.
    assert [f["client_assertion"] for f in script.forms] == ["source-assertion-1", "source-assertion-2"]


@pytest.mark.anyio
async def test_async_client_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with AsyncTokenServiceClient(f"http://127.0.0.1:{port}/token", trust_domain="td", retries=1) as client:
        with pytest.raises(TokenServiceUnavailable):
            await client.exchange(subject_token="s.t.v", subject_token_type=TOKEN_TYPE_ACCESS_TOKEN, scope="read")


def test_a_client_passed_in_is_not_closed(serve: Serve) -> None:
    http = httpx.Client()
    with _client(serve(Scripted(JSONResponse(OK)).app()).url, client=http) as client:
        _exchange(client)
    assert not http.is_closed
    http.close()


@pytest.mark.parametrize("client_class", [TokenServiceClient, AsyncTokenServiceClient])
def test_token_endpoint_must_be_https_except_loopback_s11_5(client_class: Any) -> None:
    """§11.5: a workload authenticates the TTS before disclosing a subject token, so plain http is refused."""
    with pytest.raises(ConfigurationError) as refused:
        client_class("http://tts.shop.example/token")
    assert refused.value.code == "configuration_error" and "https" in refused.value.message
    with pytest.raises(ConfigurationError):
        client_class("ftp://tts.shop.example/token")
    for allowed in (
        client_class("https://tts.shop.example/token"),
        client_class("http://127.0.0.1:8400/token"),
        client_class("http://tts:8400/token", allow_http=True),
    ):
        assert allowed.token_endpoint.endswith("/token")
