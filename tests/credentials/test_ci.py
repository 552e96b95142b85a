"""CI OIDC tokens: GitHub Actions against an ID-token endpoint on loopback; GitLab CI from its job variable."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from txtoken.credentials import GitHubActionsOidcSource, GitLabIdTokenSource
from txtoken.errors import ConfigurationError, CredentialUnavailable
from txtoken.keys import SigningKey

from ..conftest import RunningServer
from .fakes import GITHUB_ISSUER, GITHUB_SUBJECT, GITHUB_TOKEN_PATH, Clock, FakeGitHubOidc, claims_of, make_jwt

TTS = "https://tts.shop.example"
Serve = Callable[..., RunningServer]


@pytest.fixture
def github(issuer_key: SigningKey, clock: Clock) -> FakeGitHubOidc:
    return FakeGitHubOidc(issuer_key, clock=clock)


def github_source(
    github: FakeGitHubOidc, serve: Serve, *, refresh_margin: float = 60.0, clock: Callable[[], float] = time.time
) -> GitHubActionsOidcSource:
    environ = github.environ(serve(github.app).url)
    return GitHubActionsOidcSource(TTS, environ=environ, allow_http=True, refresh_margin=refresh_margin, clock=clock)


def test_github_id_token_for_the_audience(github: FakeGitHubOidc, serve: Serve, issuer_key: SigningKey) -> None:
    source = github_source(github, serve)
    credential = source.get()
    claims = claims_of(credential.value, issuer_key)
    assert (claims["iss"], claims["sub"], claims["aud"]) == (GITHUB_ISSUER, GITHUB_SUBJECT, TTS)
    assert credential.expires_at == claims["exp"]
    assert claims_of(source.get("sts.amazonaws.com").value, issuer_key)["aud"] == "sts.amazonaws.com"
    assert github.fetches == {TTS: 1, "sts.amazonaws.com": 1}


def test_github_endpoint_enforces_the_request_token(github: FakeGitHubOidc, serve: Serve) -> None:
    environ = github.environ(serve(github.app).url)
    url = environ["ACTIONS_ID_TOKEN_REQUEST_URL"]
    assert httpx.get(url, params={"audience": TTS}).status_code == 401
    environ["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = "not-the-request-token"
    with pytest.raises(CredentialUnavailable, match=r"HTTP 401: the request token was refused") as info:
        GitHubActionsOidcSource(TTS, environ=environ, allow_http=True).get()
    assert "not-the-request-token" not in str(info.value)
    assert github.total == 0


def test_github_cached_and_refreshed_before_expiry(github: FakeGitHubOidc, serve: Serve, clock: Clock) -> None:
    github.lifetime = 300
    source = github_source(github, serve, refresh_margin=60, clock=clock)
    first = source.get()
    clock.advance(239)
    assert source.get() == first
    clock.advance(2)
    assert source.get() != first
    assert github.fetches[TTS] == 2


def test_github_concurrent_threads_trigger_one_fetch(github: FakeGitHubOidc, serve: Serve) -> None:
    github.delay = 0.1
    source = github_source(github, serve)
    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(lambda _: source.get(), range(48)))
    assert len({r.value for r in results}) == 1
    assert github.fetches == {TTS: 1}


@pytest.mark.anyio
async def test_github_concurrent_tasks_trigger_one_fetch(github: FakeGitHubOidc, serve: Serve) -> None:
    github.delay = 0.1
    source = github_source(github, serve)
    results = await asyncio.gather(*(source.aget() for _ in range(100)))
    assert len({r.value for r in results}) == 1
    assert github.fetches == {TTS: 1}


@pytest.mark.parametrize("missing", ["ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"])
def test_github_missing_variable_is_named(missing: str) -> None:
    environ = {"ACTIONS_ID_TOKEN_REQUEST_URL": "https://example.invalid/idtoken", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "x"}
    del environ[missing]
    with pytest.raises(CredentialUnavailable, match=rf"{missing} is not set; .*id-token: write"):
        GitHubActionsOidcSource(TTS, environ=environ).get()


def test_github_request_token_is_not_sent_over_plain_http(github: FakeGitHubOidc, serve: Serve) -> None:
    environ = github.environ(serve(github.app).url)
    with pytest.raises(CredentialUnavailable, match="not an https URL"):
        GitHubActionsOidcSource(TTS, environ=environ).get()
    assert github.total == 0


def test_github_secrets_never_in_repr_errors_or_logs(
    issuer_key: SigningKey, serve: Serve, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    github = FakeGitHubOidc(issuer_key)  # on the real clock
    github.lifetime = 100
    source = github_source(github, serve, clock=clock)
    credential = source.get()
    clock.advance(200)
    with pytest.raises(CredentialUnavailable, match="expired") as info:
        source.get()
    seen = repr(source) + repr(credential) + str(info.value) + caplog.text
    assert credential.value not in seen
    assert github.request_token not in seen


def test_github_empty_audience_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        GitHubActionsOidcSource("")


def test_gitlab_id_token_from_the_declared_variable(issuer_key: SigningKey, caplog: pytest.LogCaptureFixture) -> None:
    token = make_jwt(
        issuer_key,
        {"iss": "https://gitlab.com", "aud": TTS, "sub": "project_path:shop/orders:ref_type:branch:ref:main"},
    )
    source = GitLabIdTokenSource("TTS_ID_TOKEN", environ={"TTS_ID_TOKEN": token})
    credential = source.get()
    assert credential.value == token
    assert credential.expires_at is not None and credential.expires_at > time.time()
    assert caplog.text == ""  # GitLab's documented delivery: no production warning


def test_gitlab_missing_variable_says_how_to_declare_it() -> None:
    with pytest.raises(CredentialUnavailable, match=r"TTS_ID_TOKEN is not set; declare it .*id_tokens:"):
        GitLabIdTokenSource("TTS_ID_TOKEN", environ={}).get()


def test_gitlab_expired_token_is_not_served(issuer_key: SigningKey) -> None:
    token = make_jwt(issuer_key, {"aud": TTS}, lifetime=60, now=time.time() - 120)
    with pytest.raises(CredentialUnavailable, match="expired") as info:
        GitLabIdTokenSource("TTS_ID_TOKEN", environ={"TTS_ID_TOKEN": token}).get()
    assert token not in str(info.value)


def test_github_endpoint_path_is_used_as_given(github: FakeGitHubOidc, serve: Serve, issuer_key: SigningKey) -> None:
    """The api-version already in the URL is kept and the audience is added to it, as the Actions toolkit does."""
    base = serve(github.app).url
    environ = {
        "ACTIONS_ID_TOKEN_REQUEST_URL": f"{base}{GITHUB_TOKEN_PATH}?api-version=2.0&audience=ignored",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": github.request_token,
    }
    credential = GitHubActionsOidcSource(TTS, environ=environ, allow_http=True).get()
    assert claims_of(credential.value, issuer_key)["aud"] == TTS
