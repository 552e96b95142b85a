"""The Txn-Token Service as a Starlette app.

- ``POST /token``: the RFC 8693 profile of §11 (see :mod:`txtoken.service.exchange`);
- ``GET /.well-known/jwks.json``: the public keys (active and those still in their rotation overlap);
- ``POST /wit`` and ``GET /.well-known/wit-jwks.json``, when ``[wimse]`` is configured: WIT issuance
  (:mod:`txtoken.service.wit`) and the WIT keys verifiers trust;
- ``GET /.well-known/oauth-authorization-server`` (alias ``/.well-known/txn-token-service``): the metadata;
- ``GET /healthz`` (the process answers) and ``GET /readyz`` (the signing keys are loaded);
- ``GET /metrics``: Prometheus text, when ``metrics.enabled`` (see :mod:`txtoken.service.metrics`).
"""

from __future__ import annotations

import gc
import logging
import re
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from txtoken.claims import GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_TXN_TOKEN
from txtoken.errors import ConfigurationError, InvalidClient, InvalidRequest, TokenServiceError
from txtoken.extras import requires_extra
from txtoken.keys import ALGORITHMS
from txtoken.replay import MemoryReplayStore, ReplayStore
from txtoken.replay_redis import RedisReplayStore
from txtoken.service.audit import AuditLog
from txtoken.service.config import SUBJECT_TOKEN_TYPES, ServiceSettings
from txtoken.service.exchange import IssuedToken, TokenExchange
from txtoken.service.issuers import IssuerRegistry
from txtoken.service.keystore import KeyStore, KeyStoreKeySource
from txtoken.service.policy import Policy
from txtoken.service.requester import RequesterAuthenticator
from txtoken.service.subjects import SubjectProfiles
from txtoken.service.wit import WitIssuance

__all__ = ["TokenService", "create_app"]

logger = logging.getLogger("txtoken.service")

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_FORM_TYPE = "application/x-www-form-urlencoded"
#: The client authentication methods of the TTS (RFC 8414 names); the ``invalid_client`` challenge names them.
_AUTH_METHODS = ("private_key_jwt", "tls_client_auth")
# RFC 9110 §11.6.1: a 401 carries a challenge. The TTS supports no HTTP authentication scheme, so the challenge is a
# constant naming the methods it does support; nothing of the request (such as the scheme a client tried) goes in it.
_CHALLENGE = ", ".join(f'{method} realm="txtoken"' for method in _AUTH_METHODS)
_SECRET_PARAMETERS = frozenset({"subject_token", "client_assertion", "actor_token"})
_SECRET_HEADERS = ("authorization", "txn-token")
# Base64url of a JSON object ('{"' encodes to "eyJ"): a JWS or JWT, whole or truncated.
_JWS = re.compile(r"eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,2}")


@dataclass(frozen=True, slots=True)
class TokenService:
    """The assembled service: settings, keys, policy, and the token exchange."""

    settings: ServiceSettings
    keystore: KeyStore
    policy: Policy
    profiles: SubjectProfiles
    exchange: TokenExchange
    wit: WitIssuance | None = None
    #: The Redis replay store made from ``replay_redis_url``, closed by :meth:`aclose`.
    redis_replay_store: RedisReplayStore | None = None

    @classmethod
    def build(
        cls,
        settings: ServiceSettings,
        *,
        audit: AuditLog | None = None,
        clock: Callable[[], float] = time.time,
        replay_store: ReplayStore | None = None,
    ) -> TokenService:
        """Assemble the service; ``replay_store`` remembers the single-use ``jti`` of key-pair assertions and WIT key
        proofs (default: Redis at ``settings.replay_redis_url``, shared by the replicas, else this process's
        :class:`~txtoken.replay.MemoryReplayStore`)."""
        redis_store = None
        if replay_store is None and settings.replay_redis_url is not None:
            with requires_extra("redis", "replay_redis_url (the replay store the TTS replicas share)"):
                redis_store = RedisReplayStore(settings.replay_redis_url.get_secret_value(), clock=clock)
            replay_store = redis_store
        keystore = KeyStore(
            settings.key_dir,
            create=settings.mode == "development",
            algorithm=settings.algorithm,
            reload_interval=settings.keys.reload_interval,
        )
        policy = Policy(settings)
        issuers = IssuerRegistry(settings.issuers, cache_size=settings.verified_token_cache)
        authenticator = RequesterAuthenticator(
            policy,
            issuers,
            identifier=settings.identifier,
            trusted_proxy=settings.trusted_proxy,
            leeway=settings.leeway,
            key_assertion_max_lifetime=settings.key_assertion_max_lifetime,
            replay_store=replay_store if replay_store is not None else MemoryReplayStore(),
        )
        profiles = SubjectProfiles(settings, issuers, KeyStoreKeySource(keystore))
        exchange = TokenExchange(settings, authenticator, profiles, keystore, audit or AuditLog(), clock=clock)
        wit = (
            WitIssuance(settings, authenticator, replay_store=replay_store, clock=clock)
            if settings.wimse is not None
            else None
        )
        return cls(settings, keystore, policy, profiles, exchange, wit, redis_store)

    async def aclose(self) -> None:
        """Close the issuers' HTTP clients and the Redis replay store the service made (the app's shutdown)."""
        await self.profiles.aclose()
        if self.redis_replay_store is not None:
            await self.redis_replay_store.aclose()


def _oauth_error(exc: TokenServiceError) -> JSONResponse:
    headers = dict(_NO_STORE)
    if isinstance(exc, InvalidClient):
        headers["WWW-Authenticate"] = _CHALLENGE
    body = {"error": exc.oauth_error or "invalid_request", "error_description": exc.message}
    return JSONResponse(body, status_code=exc.http_status, headers=headers)


def _request_secrets(body: bytes, headers: Mapping[str, Sequence[str]]) -> list[str]:
    """The credentials a request carries (tokens, assertion, ``Authorization``), as sent and as decoded."""
    found = [value for name in _SECRET_HEADERS for value in headers.get(name, [])]
    form = body.decode("utf-8", "replace")
    for pair in form.split("&"):
        name, _, raw = pair.partition("=")
        if name in _SECRET_PARAMETERS:
            found.append(raw)
    found += [value for name, value in parse_qsl(form, keep_blank_values=True) if name in _SECRET_PARAMETERS]
    return found


def _scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` without the given secrets and without anything shaped like a JWS or JWT."""
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return _JWS.sub("[redacted]", text)


def _server_error(exc: Exception, body: bytes, headers: Mapping[str, Sequence[str]]) -> JSONResponse:
    """A bug: answer without details; log the traceback, scrubbed of the request's credentials."""
    text = "".join(traceback.format_exception(exc)).rstrip()
    logger.error("token endpoint failed: %s", _scrub(text, _request_secrets(body, headers)))
    return JSONResponse({"error": "server_error"}, status_code=500, headers=_NO_STORE)


def _log_refusal(request: Request, exc: TokenServiceError) -> None:
    method, path = request.method, request.url.path
    fields = {"method": method, "path": path, "status": exc.http_status, "code": exc.code}
    logger.info(
        "refused a token request: %s %s status=%s code=%s", method, path, exc.http_status, exc.code, extra=fields
    )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise InvalidRequest(f"the request body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise InvalidRequest(f"the request body is larger than {limit} bytes")
    return bytes(body)


async def _form_request(request: Request, limit: int) -> tuple[bytes, dict[str, list[str]], str | None]:
    """A form POST's body, its headers (lowercase name -> values) and the peer address."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != _FORM_TYPE:
        raise InvalidRequest(f"the request must be {_FORM_TYPE}")
    body = await _read_body(request, limit)
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    return body, headers, request.client.host if request.client else None


def _success(issued: IssuedToken) -> JSONResponse:
    body: dict[str, Any] = {
        "access_token": issued.token,
        "issued_token_type": TOKEN_TYPE_TXN_TOKEN,
        "token_type": "N_A",
        "expires_in": issued.expires_in,
    }
    if issued.scope_changed:
        body["scope"] = issued.scope
    return JSONResponse(body, headers=_NO_STORE)


def create_app(service: TokenService | ServiceSettings, *, freeze_gc: bool = False) -> Starlette:
    """The TTS as an ASGI app (serve it with proxy headers off, so the peer address is the real one).

    ``freeze_gc`` (what ``txtoken serve`` does) moves everything allocated before startup out of the cyclic garbage
    collector's full passes, which otherwise pause requests for milliseconds; it affects the whole process.
    """
    tts = service if isinstance(service, TokenService) else TokenService.build(service)
    settings = tts.settings

    async def token(request: Request) -> Response:
        body = b""
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        try:
            content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if content_type != _FORM_TYPE:
                raise InvalidRequest(f"the request must be {_FORM_TYPE}")
            body = await _read_body(request, settings.max_request_size)
        except TokenServiceError as exc:  # refused before the exchange, so before its audit record
            _log_refusal(request, exc)
            return _oauth_error(exc)
        except Exception as exc:
            return _server_error(exc, body, headers)
        try:
            peer = request.client.host if request.client else None
            issued = await tts.exchange.exchange(body, headers, peer)
        except TokenServiceError as exc:
            return _oauth_error(exc)
        except Exception as exc:
            return _server_error(exc, body, headers)
        return _success(issued)

    async def wit(request: Request) -> Response:
        assert tts.wit is not None  # noqa: S101 (routed only when configured)
        body = b""
        headers: dict[str, list[str]] = {}
        try:
            body, headers, peer = await _form_request(request, settings.max_request_size)
            issued = await tts.wit.issue(body, headers, peer)
        except TokenServiceError as exc:
            _log_refusal(request, exc)
            return _oauth_error(exc)
        except Exception as exc:
            return _server_error(exc, body, headers)
        body_out = {"wit": issued.token, "workload": issued.workload, "expires_in": issued.expires_in}
        return JSONResponse(body_out, headers=_NO_STORE)

    async def wit_jwks(request: Request) -> Response:
        assert tts.wit is not None  # noqa: S101 (routed only when configured)
        keys = tts.wit.keystore.current().public_jwks()
        return JSONResponse(keys, headers={"Cache-Control": "public, max-age=60"})

    async def jwks(request: Request) -> Response:
        return JSONResponse(tts.keystore.current().public_jwks(), headers={"Cache-Control": "public, max-age=60"})

    async def metadata(request: Request) -> Response:
        base = (settings.public_url or str(request.base_url)).rstrip("/")
        return JSONResponse(
            {
                "issuer": settings.identifier,
                "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/.well-known/jwks.json",
                "grant_types_supported": [GRANT_TYPE_TOKEN_EXCHANGE],
                "requested_token_types_supported": [TOKEN_TYPE_TXN_TOKEN],
                "subject_token_types_supported": sorted(SUBJECT_TOKEN_TYPES.values()),
                "token_endpoint_auth_methods_supported": list(_AUTH_METHODS),
                "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
                "txn_token_signing_alg_values_supported": [tts.keystore.current().active.alg],
                "trust_domains": settings.trust_domains,
                **(
                    {"wit_endpoint": f"{base}/wit", "wit_jwks_uri": f"{base}/.well-known/wit-jwks.json"}
                    if tts.wit is not None
                    else {}
                ),
            }
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            tts.keystore.current().public_jwks()
        except ConfigurationError:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    routes: list[Route] = []
    metrics = None
    if settings.metrics.enabled:
        from txtoken.service.metrics import PrometheusMetrics

        metrics = PrometheusMetrics()
        routes.append(Route("/metrics", metrics.endpoint, methods=["GET"]))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if metrics is not None:
            metrics.start()
        if freeze_gc:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            if metrics is not None:
                metrics.stop()
            await tts.aclose()

    return Starlette(
        routes=[
            *routes,
            Route("/token", token, methods=["POST"]),
            Route("/.well-known/jwks.json", jwks, methods=["GET"]),
            Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
            Route("/.well-known/txn-token-service", metadata, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            *(
                [Route("/wit", wit, methods=["POST"]), Route("/.well-known/wit-jwks.json", wit_jwks, methods=["GET"])]
                if tts.wit is not None
                else []
            ),
        ],
        lifespan=lifespan,
    )
