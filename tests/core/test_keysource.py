"""Key sources: static keys, a JWKS file that is reloaded when it changes, and a remote JWKS over a real server.

Remote tests run a uvicorn server on loopback and count requests at the server. Time is a fake clock for the key
source (its monotonic clock) and another for the verifier (wall clock), so nothing sleeps except the server's own
artificial delay that keeps a fetch in flight while concurrent verifications pile up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from txtoken import JwksFileKeySource, KeySet, RemoteJwksKeySource, SigningKey, StaticKeySource, TxnTokenVerifier
from txtoken.errors import ConfigurationError, KeysUnavailable, TxTokenError, UnknownKey

from ..conftest import RunningServer
from .conftest import NOW, FakeClock, claims, header, raises_exactly, rejected, sign, token, verifier

# --- static ---------------------------------------------------------------------------------------------------------


def test_static_key_source(signing_keys: dict[str, SigningKey]) -> None:
    es, ed = signing_keys["ES256"], signing_keys["Ed25519"]
    source = StaticKeySource([es.verification_key, ed.verification_key])
    assert source.cached_key(es.kid) == es.verification_key
    assert source.fetch_key(ed.kid) == ed.verification_key
    assert source.cached_key("nope") is None
    raises_exactly(UnknownKey, "kid_unknown", lambda: source.fetch_key("nope"))
    v = verifier(source)
    assert v.verify(token(es)).kid == es.kid and v.verify(token(ed)).kid == ed.kid
    rejected(v, token(SigningKey.generate()), UnknownKey, "kid_unknown")
    # A key set is accepted directly: its published keys.
    assert verifier(KeySet(es)).verify(token(es)).kid == es.kid


@pytest.mark.anyio
async def test_static_key_source_async(es256: SigningKey) -> None:
    source = StaticKeySource([es256.verification_key])
    assert await source.afetch_key(es256.kid) == es256.verification_key
    with pytest.raises(UnknownKey):
        await source.afetch_key("nope")
    assert (await verifier(source).averify(token(es256))).kid == es256.kid


# --- JWKS file ------------------------------------------------------------------------------------------------------


def _jwks(*keys: SigningKey) -> str:
    return json.dumps({"keys": [k.verification_key.to_jwk() for k in keys]})


def test_jwks_file_rewritten_in_place_is_reloaded(tmp_path: Path) -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    path = tmp_path / "jwks.json"
    path.write_text(_jwks(a))
    v = verifier(JwksFileKeySource(path))
    assert v.verify(token(a)).kid == a.kid
    before = path.stat()
    path.write_text(_jwks(b))  # same inode, same size (one P-256 key each)
    # As if rewritten within the same filesystem timestamp tick: size, inode and mtime all unchanged.
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_ino, path.stat().st_size, path.stat().st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert v.verify(token(b)).kid == b.kid  # unknown kid: the file is checked again at once


def test_jwks_file_replaced_by_atomic_rename_is_reloaded(tmp_path: Path) -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    path = tmp_path / "jwks.json"
    path.write_text(_jwks(a))
    v = verifier(JwksFileKeySource(path))
    assert v.verify(token(a)).kid == a.kid
    staged = tmp_path / ".jwks.json.tmp"
    staged.write_text(_jwks(a, b))
    os.replace(staged, path)
    assert v.verify(token(b)).kid == b.kid
    assert v.verify(token(a)).kid == a.kid


def test_jwks_file_removed_key_is_dropped_after_the_check_interval(tmp_path: Path) -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    path = tmp_path / "jwks.json"
    path.write_text(_jwks(a, b))
    mono = FakeClock(0)
    v = verifier(JwksFileKeySource(path, check_interval=5, clock=mono))
    assert v.verify(token(b)).kid == b.kid
    path.write_text(_jwks(a))
    mono.advance(4.9)
    assert v.verify(token(b)).kid == b.kid  # not checked yet
    mono.advance(0.1)
    rejected(v, token(b), UnknownKey, "kid_unknown")
    assert v.verify(token(a)).kid == a.kid


def test_jwks_file_missing_or_broken_fails_at_construction_naming_the_path(tmp_path: Path) -> None:
    """issue 10: JwksFileKeySource("/nope/jwks.json") was accepted, and each request then got 503 naming no path."""
    path = tmp_path / "jwks.json"
    with pytest.raises(ConfigurationError) as info:
        JwksFileKeySource(path)
    assert str(path) in info.value.message and "No such file" in info.value.message
    path.write_text("{")
    with pytest.raises(ConfigurationError, match="not a usable JWKS") as info:
        JwksFileKeySource(path)
    assert str(path) in info.value.message


def test_jwks_file_broken_later_keeps_the_last_good_keys(tmp_path: Path) -> None:
    a = SigningKey.generate()
    path = tmp_path / "jwks.json"
    path.write_text(_jwks(a))
    v = verifier(JwksFileKeySource(path))
    assert v.verify(token(a)).kid == a.kid
    for broken in ("{", '{"keys": "none"}', "", "[" * 100_000 + "]" * 100_000):
        path.write_text(broken)
        assert v.verify(token(a)).kid == a.kid  # a bad rewrite keeps the last good keys
        rejected(v, token(SigningKey.generate()), UnknownKey, "kid_unknown")
    path.unlink()
    assert v.verify(token(a)).kid == a.kid


# --- remote JWKS over a real server ---------------------------------------------------------------------------------


@dataclass
class JwksEndpoint:
    """A TTS's JWKS endpoint whose answers the test controls; ``requests`` counts what reached the server."""

    document: dict[str, Any]
    status: int = 200
    delay: float = 0.0
    cache_control: str | None = None
    requests: int = 0
    redirected: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def jwks(self, request: Request) -> Response:
        with self.lock:
            self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status != 200:
            return PlainTextResponse("BODY-OF-A-FAILURE", status_code=self.status)
        headers = {"Cache-Control": self.cache_control} if self.cache_control else None
        return JSONResponse(self.document, headers=headers)

    async def moved(self, request: Request) -> Response:
        with self.lock:
            self.redirected += 1
        return RedirectResponse("/jwks", status_code=int(request.path_params["status"]))

    async def garbage(self, request: Request) -> Response:
        return PlainTextResponse("<html>not json</html>")


def _endpoint(serve: Callable[..., RunningServer], *keys: SigningKey) -> tuple[JwksEndpoint, RunningServer]:
    endpoint = JwksEndpoint({"keys": [k.verification_key.to_jwk() for k in keys]})
    app = Starlette(
        routes=[
            Route("/jwks", endpoint.jwks),
            Route("/moved/{status:int}", endpoint.moved),
            Route("/garbage", endpoint.garbage),
        ]
    )
    return endpoint, serve(app)


def _remote(server: RunningServer, mono: FakeClock, path: str = "/jwks", **options: Any) -> RemoteJwksKeySource:
    options.setdefault("ttl", 60)
    options.setdefault("min_refresh_interval", 10)
    options.setdefault("refresh_burst", 1)
    options.setdefault("max_stale", 300)
    return RemoteJwksKeySource(f"{server.url}{path}", allow_http=True, clock=mono, **options)


def test_remote_refreshes_after_the_ttl(es256: SigningKey, serve: Callable[..., RunningServer]) -> None:
    endpoint, server = _endpoint(serve, es256)
    mono = FakeClock(0)
    v = verifier(_remote(server, mono))
    tok = token(es256)
    assert v.verify(tok).kid == es256.kid
    assert endpoint.requests == 1
    mono.advance(59)
    v.verify(tok)
    assert endpoint.requests == 1  # fresh: served from memory
    mono.advance(1)
    v.verify(tok)
    assert endpoint.requests == 2  # TTL over: refetched


def test_remote_picks_up_a_new_kid_at_once_even_right_after_a_refresh(
    es256: SigningKey, serve: Callable[..., RunningServer]
) -> None:
    """issue 10: a verifier that had fetched the JWKS less than min_refresh_interval earlier refused every token of
    a new key with kid_unknown until its next allowed refresh."""
    endpoint, server = _endpoint(serve, es256)
    mono = FakeClock(0)
    v = verifier(_remote(server, mono))  # ttl 60, one unknown-kid refresh per 10 s
    v.verify(token(es256))
    new = SigningKey.generate()
    endpoint.document = KeySet(es256).rotate(new, overlap=600).public_jwks()
    mono.advance(1)  # 1 s after the fetch
    assert v.verify(token(new)).kid == new.kid  # unknown kid: one refresh, rotation picked up
    assert endpoint.requests == 2
    for _ in range(20):  # kid spraying right after that refresh fetches nothing: the bucket is empty
        rejected(v, token(SigningKey.generate()), UnknownKey, "kid_unknown")
    assert endpoint.requests == 2
    assert v.verify(token(es256)).kid == es256.kid


def _tokens_for(key: SigningKey, n: int) -> list[str]:
    return [token(key, payload=claims(txn=f"txn-{i}")) for i in range(n)]


def _sprayed(key: SigningKey, n: int) -> list[str]:
    return [sign(header(key, kid=f"made-up-{i}"), claims(), key) for i in range(n)]


def _warm_then_rotate(
    serve: Callable[..., RunningServer], old: SigningKey
) -> tuple[JwksEndpoint, TxnTokenVerifier, FakeClock, SigningKey]:
    endpoint, server = _endpoint(serve, old)
    mono = FakeClock(0)
    v = verifier(_remote(server, mono))
    v.verify(token(old))
    assert endpoint.requests == 1
    new = SigningKey.generate()
    endpoint.document = KeySet(old).rotate(new, overlap=600).public_jwks()
    endpoint.delay = 0.3  # keep the refresh in flight while the others arrive
    mono.advance(10)
    return endpoint, v, mono, new


@pytest.mark.anyio
async def test_remote_100_concurrent_unknown_kid_async_verifications_fetch_once(
    es256: SigningKey, serve: Callable[..., RunningServer]
) -> None:
    endpoint, v, _, new = _warm_then_rotate(serve, es256)
    results = await asyncio.gather(*(v.averify(t) for t in _tokens_for(new, 100)))
    assert {r.kid for r in results} == {new.kid} and len(results) == 100
    assert endpoint.requests == 2  # the warm-up fetch and one refresh
    sprayed = await asyncio.gather(*(v.averify(t) for t in _sprayed(es256, 100)), return_exceptions=True)
    assert all(isinstance(e, UnknownKey) and e.code == "kid_unknown" for e in sprayed)
    assert endpoint.requests == 2  # within min_refresh_interval of the refresh


@pytest.mark.anyio
async def test_remote_100_concurrent_sprayed_kids_async_fetch_once(
    es256: SigningKey, serve: Callable[..., RunningServer]
) -> None:
    endpoint, v, _, _ = _warm_then_rotate(serve, es256)
    sprayed = await asyncio.gather(*(v.averify(t) for t in _sprayed(es256, 100)), return_exceptions=True)
    assert all(isinstance(e, UnknownKey) and e.code == "kid_unknown" for e in sprayed)
    assert endpoint.requests == 2


def _run_threads(v: TxnTokenVerifier, tokens: list[str]) -> list[object]:
    barrier = threading.Barrier(len(tokens))

    def one(tok: str) -> object:
        barrier.wait()
        try:
            return v.verify(tok)
        except TxTokenError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        return list(pool.map(one, tokens))


def test_remote_100_concurrent_unknown_kid_threaded_verifications_fetch_once(
    es256: SigningKey, serve: Callable[..., RunningServer]
) -> None:
    endpoint, v, mono, new = _warm_then_rotate(serve, es256)
    results = _run_threads(v, _tokens_for(new, 100))
    assert all(getattr(r, "kid", None) == new.kid for r in results)
    assert endpoint.requests == 2
    mono.advance(10)
    sprayed = _run_threads(v, _sprayed(es256, 100))
    assert all(isinstance(e, UnknownKey) and e.code == "kid_unknown" for e in sprayed)
    assert endpoint.requests == 3


def test_remote_endpoint_down_serves_cached_keys_then_fails_closed(
    es256: SigningKey, serve: Callable[..., RunningServer]
) -> None:
    endpoint, server = _endpoint(serve, es256)
    mono = FakeClock(0)
    v = verifier(_remote(server, mono))  # ttl 60, min_refresh_interval 10, max_stale 300
    tok = token(es256)
    v.verify(tok)  # last success at t=0
    endpoint.status = 503
    for t in (100, 250, 299):
        mono.now = t
        assert v.verify(tok).kid == es256.kid  # stale but within max_stale
    assert endpoint.requests == 4  # each stale lookup retried the endpoint (rate-limited)
    rejected(v, token(SigningKey.generate()), UnknownKey, "kid_unknown")
    mono.now = 300
    rejected(v, tok, KeysUnavailable, "keys_unavailable")
    mono.now = 1000
    rejected(v, tok, KeysUnavailable, "keys_unavailable")
    endpoint.status = 200  # back: the next allowed refresh recovers
    mono.advance(10)
    assert v.verify(tok).kid == es256.kid


@pytest.mark.anyio
async def test_remote_endpoint_unreachable_async(es256: SigningKey, serve: Callable[..., RunningServer]) -> None:
    endpoint, server = _endpoint(serve, es256)
    mono = FakeClock(0)
    v = verifier(_remote(server, mono))
    tok = token(es256)
    await v.averify(tok)
    server.stop()  # connection refused from now on
    mono.now = 200
    assert (await v.averify(tok)).kid == es256.kid
    mono.now = 300
    with pytest.raises(KeysUnavailable) as info:
        await v.averify(tok)
    assert type(info.value) is KeysUnavailable and info.value.code == "keys_unavailable"
    assert endpoint.requests == 1


@pytest.mark.anyio
async def test_remote_cold_start_failures_fail_closed(es256: SigningKey, serve: Callable[..., RunningServer]) -> None:
    endpoint, server = _endpoint(serve, es256)
    endpoint.status = 500
    rejected(verifier(_remote(server, FakeClock(0))), token(es256), KeysUnavailable, "keys_unavailable")
    garbage = verifier(_remote(server, FakeClock(0), path="/garbage"))
    rejected(garbage, token(es256), KeysUnavailable, "keys_unavailable")
    with pytest.raises(KeysUnavailable):
        await verifier(_remote(server, FakeClock(0), path="/garbage")).averify(token(es256))


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_remote_redirects_are_not_followed(es256: SigningKey, serve: Callable[..., RunningServer], status: int) -> None:
    endpoint, server = _endpoint(serve, es256)
    v = verifier(_remote(server, FakeClock(0), path=f"/moved/{status}"))
    rejected(v, token(es256), KeysUnavailable, "keys_unavailable")
    assert endpoint.redirected == 1
    assert endpoint.requests == 0  # the redirect target was never fetched


@pytest.mark.anyio
async def test_remote_redirects_are_not_followed_async(es256: SigningKey, serve: Callable[..., RunningServer]) -> None:
    endpoint, server = _endpoint(serve, es256)
    with pytest.raises(KeysUnavailable):
        await verifier(_remote(server, FakeClock(0), path="/moved/302")).averify(token(es256))
    assert (endpoint.redirected, endpoint.requests) == (1, 0)


def test_remote_http_is_refused_without_allow_http() -> None:
    raises_exactly(ConfigurationError, "configuration_error", lambda: RemoteJwksKeySource("http://127.0.0.1:8080/jwks"))
    assert isinstance(RemoteJwksKeySource("http://127.0.0.1:8080/jwks", allow_http=True), RemoteJwksKeySource)


# --- refresh rules (issue 10) ---------------------------------------------------------------------------------------


def test_remote_a_flood_of_made_up_kids_costs_the_burst_then_one_fetch_per_interval(
    es256: SigningKey, serve: Callable[..., RunningServer]
) -> None:
    """The worst case, measured at the server: 1,000 made-up kids cost the burst (3 fetches), then one fetch per
    min_refresh_interval; a legitimately new key that is not yet published waits at most that interval."""
    endpoint, server = _endpoint(serve, es256)
    mono = FakeClock(0)
    v = verifier(_remote(server, mono, refresh_burst=3))  # ttl 60, one refill per 10 s
    v.verify(token(es256))
    sprayed = _sprayed(es256, 1000)
    for tok in sprayed:
        rejected(v, tok, UnknownKey, "kid_unknown")
    assert endpoint.requests == 1 + 3
    new = SigningKey.generate()
    endpoint.document = KeySet(es256).rotate(new, overlap=600).public_jwks()
    mono.advance(9.9)
    rejected(v, token(new), UnknownKey, "kid_unknown")  # the flood emptied the bucket
    assert endpoint.requests == 4
    mono.advance(0.1)  # one refill: the new key is fetched
    assert v.verify(token(new)).kid == new.kid
    assert endpoint.requests == 5
    for tok in sprayed[:100]:
        rejected(v, tok, UnknownKey, "kid_unknown")
    assert endpoint.requests == 5
    assert v.verify(token(es256)).kid == es256.kid


def test_remote_a_prepublished_key_is_known_before_it_signs_even_during_a_flood(
    es256: SigningKey, serve: Callable[..., RunningServer]
) -> None:
    """With the new key published for longer than the cache TTL before it signs, a verifier knows it before the
    first token, whatever a flood did to the refresh bucket."""
    endpoint, server = _endpoint(serve, es256)
    mono = FakeClock(0)
    v = verifier(_remote(server, mono, refresh_burst=3))  # ttl 60
    v.verify(token(es256))
    new = SigningKey.generate()
    keys = KeySet(es256).rotate(new, overlap=600, prepublish=60, now=NOW)
    endpoint.document = keys.public_jwks(now=NOW)  # published now, signing in 60 s
    for tok in _sprayed(es256, 200):
        rejected(v, tok, UnknownKey, "kid_unknown")
    mono.advance(60)
    assert v.verify(token(new)).kid == new.kid  # the TTL refresh brought it; no bucket needed
    assert endpoint.requests == 1 + 3 + 1


def test_remote_honours_cache_control_max_age_within_bounds(
    es256: SigningKey, serve: Callable[..., RunningServer]
) -> None:
    endpoint, server = _endpoint(serve, es256)
    tok = token(es256)
    for header_value, fresh_for in (
        ("public, max-age=20", 20),
        ("max-age=0", 5),
        ("no-store", 5),
        ("max-age=9999", 60),
    ):
        endpoint.cache_control = header_value
        mono = FakeClock(0)
        v = verifier(_remote(server, mono, min_ttl=5))  # bounds: [5, 60]
        v.verify(tok)
        before = endpoint.requests
        mono.advance(fresh_for - 0.5)
        v.verify(tok)
        assert endpoint.requests == before, header_value  # still fresh
        mono.advance(0.5)
        v.verify(tok)
        assert endpoint.requests == before + 1, header_value  # refetched when its max-age (bounded) ran out


def test_remote_failed_first_fetch_is_retried_with_a_short_backoff(
    es256: SigningKey, serve: Callable[..., RunningServer]
) -> None:
    """issue 10: after a failed first fetch, requests kept failing for min_refresh_interval (30 s) even once the TTS
    was up (still failing at 3 s and 15 s). With no keys yet, a failed fetch is retried after 0.1 s, 0.2 s, ... up to
    5 s, whatever min_refresh_interval says."""
    endpoint, server = _endpoint(serve, es256)
    endpoint.status = 503
    mono = FakeClock(0)
    v = verifier(_remote(server, mono, min_refresh_interval=30))
    tok = token(es256)
    for now, requests in ((0, 1), (0.09, 1), (0.11, 2), (0.29, 2), (0.31, 3), (0.69, 3), (0.71, 4)):
        mono.now = now
        rejected(v, tok, KeysUnavailable, "keys_unavailable")
        assert endpoint.requests == requests, now  # each retry as soon as its backoff (0.1, 0.2, 0.4 s) allowed
    mono.now = 100
    rejected(v, tok, KeysUnavailable, "keys_unavailable")
    requests = endpoint.requests
    endpoint.status = 200  # the TTS is up
    mono.advance(5)  # the longest backoff without keys
    assert v.verify(tok).kid == es256.kid
    assert endpoint.requests == requests + 1


def test_remote_failed_fetches_are_logged_once_per_streak_without_the_body(
    es256: SigningKey, serve: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture
) -> None:
    """issue 10: a failed fetch was swallowed (``except: pass``): the cause is now logged at WARNING, once per streak
    of failures, with the URL and the HTTP status or exception class, never the response body."""
    endpoint, server = _endpoint(serve, es256)
    mono = FakeClock(0)
    url = f"{server.url}/jwks"
    v = verifier(_remote(server, mono))
    tok = token(es256)
    caplog.set_level(logging.INFO, logger="txtoken.keysource")
    v.verify(tok)
    endpoint.status = 502
    for t in (61, 100, 200):  # three failed refreshes in a row, stale keys still served
        mono.now = t
        assert v.verify(tok).kid == es256.kid
    assert endpoint.requests == 4
    records = [r for r in caplog.records if r.name == "txtoken.keysource"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.WARNING, f"JWKS fetch from {url} failed: HTTP 502; serving the last good keys")
    ]
    endpoint.status = 200
    mono.now = 300
    v.verify(tok)
    last = [r for r in caplog.records if r.name == "txtoken.keysource"][-1]
    assert (last.levelno, last.getMessage()) == (
        logging.INFO,
        f"JWKS fetch from {url} succeeded after 3 failed attempt(s)",
    )
    server.stop()  # a new streak: connection refused
    mono.now = 400
    v.verify(tok)
    last = [r for r in caplog.records if r.name == "txtoken.keysource"][-1]
    assert (last.levelno, last.getMessage()) == (
        logging.WARNING,
        f"JWKS fetch from {url} failed: ConnectError; serving the last good keys",
    )
    assert "BODY-OF-A-FAILURE" not in caplog.text


def test_remote_log_lines_leave_out_credentials_in_the_url() -> None:
    source = RemoteJwksKeySource("https://user:secret@tts.example/jwks")
    assert "secret" not in source._shown_url and source._shown_url == "https://tts.example/jwks"


def test_remote_prefetch_and_ready(es256: SigningKey, serve: Callable[..., RunningServer]) -> None:
    endpoint, server = _endpoint(serve, es256)
    mono = FakeClock(0)
    source = _remote(server, mono)
    assert not source.ready()
    source.prefetch()
    assert source.ready() and endpoint.requests == 1
    assert verifier(source).verify(token(es256)).kid == es256.kid
    assert endpoint.requests == 1  # the first request found the keys in place
    mono.now = 300  # max_stale passed
    assert not source.ready()
    endpoint.status = 503
    with pytest.raises(KeysUnavailable) as info:
        _remote(server, mono).prefetch()
    assert info.value.message == f"no keys from {server.url}/jwks: HTTP 503"


@pytest.mark.anyio
async def test_remote_aprefetch(es256: SigningKey, serve: Callable[..., RunningServer]) -> None:
    endpoint, server = _endpoint(serve, es256)
    source = _remote(server, FakeClock(0))
    await asyncio.gather(source.aprefetch(), source.aprefetch())
    assert source.ready() and endpoint.requests == 1  # single-flight
    server.stop()
    with pytest.raises(KeysUnavailable, match="ConnectError"):
        await _remote(server, FakeClock(0)).aprefetch()


def test_remote_a_ttl_below_min_ttl_is_the_bound(es256: SigningKey, serve: Callable[..., RunningServer]) -> None:
    endpoint, server = _endpoint(serve, es256)
    endpoint.cache_control = "max-age=60"
    mono = FakeClock(0)
    v = verifier(_remote(server, mono, ttl=2))  # min_ttl 10 by default: ttl wins
    v.verify(token(es256))
    mono.advance(2)
    v.verify(token(es256))
    assert endpoint.requests == 2
    raises_exactly(ConfigurationError, "configuration_error", lambda: _remote(server, mono, refresh_burst=-1))
