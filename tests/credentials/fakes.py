"""Test doubles of the platforms that issue workload credentials, built to their public documentation.

- :class:`FakeWorkloadApi`: a SPIFFE Workload API server (gRPC on a unix socket, from the protobuf definitions that
  py-spiffe ships) answering ``FetchJWTSVID`` with JWT-SVIDs signed by a test key; it refuses calls without the
  ``workload.spiffe.io: true`` metadata with ``InvalidArgument``, as the SPIFFE Workload Endpoint spec requires.
- :class:`FakeGcpMetadata` / :class:`FakeAzureImds`: instance-metadata identity endpoints (Starlette apps) that demand
  their provider's request header, refuse ``X-Forwarded-For`` and put the requested audience in the token.
- :class:`FakeGitHubOidc`: the GitHub Actions ID-token endpoint: ``Authorization: bearer <request token>``,
  ``audience`` query parameter, ``{"value": <JWT>}``.

Each counts its token requests per audience, so tests can see what was fetched and how often.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from spiffe._proto import workload_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from txtoken.jws import parse_jws, verify_jws
from txtoken.keys import ALGORITHMS, SigningKey
from txtoken.mint import encode_jws

GCP_IDENTITY_PATH = "/computeMetadata/v1/instance/service-accounts/default/identity"
AZURE_TOKEN_PATH = "/metadata/identity/oauth2/token"
GITHUB_TOKEN_PATH = "/_apis/distributedtask/hubs/Actions/plans/p1/jobs/j1/idtoken"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_SUBJECT = "repo:octo-org/octo-repo:ref:refs/heads/main"
GCP_SUBJECT = "107517467455664443765"


class Clock:
    """A settable clock (seconds since the epoch), starting now."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_jwt(key: SigningKey, claims: Mapping[str, Any], *, lifetime: float = 600, now: float | None = None) -> str:
    """A JWT signed with ``key``: ``claims`` plus ``iat``, ``exp`` and a random ``jti``."""
    iat = int(time.time() if now is None else now)
    body = {"iat": iat, "exp": int(iat + lifetime), "jti": secrets.token_hex(8), **claims}
    return encode_jws(body, key, typ="JWT")


def claims_of(token: str, key: SigningKey) -> dict[str, Any]:
    """The claims of ``token`` after checking its signature with ``key``."""
    return verify_jws(parse_jws(token, algorithms=frozenset(ALGORITHMS)), key.verification_key)


class _Counting:
    def __init__(self, key: SigningKey, clock: Callable[[], float]) -> None:
        self.key = key
        self.clock = clock
        self.fetches: Counter[str] = Counter()
        self.delay = 0.0
        self.lifetime = 600.0
        self._lock = threading.Lock()

    def count(self, audience: str) -> None:
        with self._lock:
            self.fetches[audience] += 1

    @property
    def total(self) -> int:
        return sum(self.fetches.values())


class FakeWorkloadApi(_Counting):
    """A SPIFFE Workload API on a unix socket; ``start()`` it, ``stop()`` it."""

    spiffe_id = "spiffe://example.org/ns/shop/sa/orders"

    def __init__(self, key: SigningKey, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(key, clock)
        self.lifetime = 300.0
        # Unix socket paths are limited to about 100 bytes: keep the directory short.
        self._dir = tempfile.mkdtemp(prefix="wlapi-", dir="/tmp")
        self.socket_path = os.path.join(self._dir, "agent.sock")
        self.address = f"unix://{self.socket_path}"
        self._server: grpc.Server | None = None

    def start(self) -> FakeWorkloadApi:
        server = grpc.server(ThreadPoolExecutor(max_workers=16))
        handler = grpc.unary_unary_rpc_method_handler(
            self._fetch_jwt_svid,
            request_deserializer=workload_pb2.JWTSVIDRequest.FromString,
            response_serializer=workload_pb2.JWTSVIDResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("SpiffeWorkloadAPI", {"FetchJWTSVID": handler}),)
        )
        server.add_insecure_port(f"unix:{self.socket_path}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(None).wait()
            self._server = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _fetch_jwt_svid(
        self, request: workload_pb2.JWTSVIDRequest, context: grpc.ServicerContext
    ) -> workload_pb2.JWTSVIDResponse:
        metadata = dict(context.invocation_metadata())
        if metadata.get("workload.spiffe.io") != "true":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "security header missing from request")
        audiences = list(request.audience)
        if not audiences:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "audience must be specified")
        self.count(" ".join(audiences))
        time.sleep(self.delay)
        now = self.clock()
        token = make_jwt(self.key, {"sub": self.spiffe_id, "aud": audiences}, lifetime=self.lifetime, now=now)
        return workload_pb2.JWTSVIDResponse(svids=[workload_pb2.JWTSVID(spiffe_id=self.spiffe_id, svid=token)])


class FakeGcpMetadata(_Counting):
    """GCP's metadata server: ``identity`` needs ``Metadata-Flavor: Google`` and a non-empty ``audience``."""

    issuer = "https://accounts.google.com"

    def __init__(self, key: SigningKey, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(key, clock)
        self.app = Starlette(
            routes=[
                Route(GCP_IDENTITY_PATH, self.identity),
                Route("/moved", lambda request: RedirectResponse(GCP_IDENTITY_PATH, status_code=302)),
                Route("/impostor", self.impostor),
            ]
        )

    def _refusal(self, request: Request) -> Response | None:
        if request.headers.get("metadata-flavor") != "Google":
            return PlainTextResponse("Missing Metadata-Flavor:Google header.", status_code=403)
        if "x-forwarded-for" in request.headers:
            return PlainTextResponse("Request containing X-Forwarded-For are rejected.", status_code=403)
        if not request.query_params.get("audience"):
            return PlainTextResponse("non-empty audience parameter required", status_code=400)
        return None

    def _token(self, audience: str) -> str:
        claims = {"iss": self.issuer, "aud": audience, "azp": GCP_SUBJECT, "sub": GCP_SUBJECT}
        return make_jwt(self.key, claims, lifetime=self.lifetime, now=self.clock())

    async def identity(self, request: Request) -> Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        audience = request.query_params["audience"]
        self.count(audience)
        await asyncio.sleep(self.delay)
        return PlainTextResponse(self._token(audience), headers={"Metadata-Flavor": "Google"})

    async def impostor(self, request: Request) -> Response:
        """Answers like the identity endpoint, but without the ``Metadata-Flavor`` response header."""
        return PlainTextResponse(self._token(request.query_params.get("audience", "x")))


def _azure_bad_request(description: str) -> Response:
    return JSONResponse({"error": "invalid_request", "error_description": description}, 400)


class FakeAzureImds(_Counting):
    """Azure IMDS: ``Metadata: true``, ``api-version`` and ``resource`` required; JSON with ``access_token``."""

    issuer = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"

    def __init__(self, key: SigningKey, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(key, clock)
        self.app = Starlette(routes=[Route(AZURE_TOKEN_PATH, self.token)])

    async def token(self, request: Request) -> Response:
        if request.headers.get("metadata") != "true" or "x-forwarded-for" in request.headers:
            return _azure_bad_request("Required metadata header not specified")
        if not request.query_params.get("api-version"):
            return _azure_bad_request("Required query variable 'api-version' is missing")
        resource = request.query_params.get("resource")
        if not resource:
            return _azure_bad_request("Required query variable 'resource' is missing")
        self.count(resource)
        now = self.clock()
        claims = {"iss": self.issuer, "aud": resource, "sub": "f5c1c2b0-7d43-4b3e-9f4a-1a2b3c4d5e6f"}
        token = make_jwt(self.key, claims, lifetime=self.lifetime, now=now)
        expires_on = str(int(now + self.lifetime))
        return JSONResponse(
            {
                "access_token": token,
                "expires_in": str(int(self.lifetime)),
                "expires_on": expires_on,
                "resource": resource,
                "token_type": "Bearer",
            }
        )


class FakeGitHubOidc(_Counting):
    """The GitHub Actions ID-token endpoint for one job, whose request token is :attr:`request_token`."""

    default_audience = "https://github.com/octo-org"

    def __init__(self, key: SigningKey, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(key, clock)
        self.request_token = secrets.token_urlsafe(24)
        self.app = Starlette(routes=[Route(GITHUB_TOKEN_PATH, self.idtoken)])

    def environ(self, base_url: str) -> dict[str, str]:
        """The variables the runner sets for a job with ``permissions: id-token: write``."""
        return {
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{base_url}{GITHUB_TOKEN_PATH}?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.request_token,
        }

    async def idtoken(self, request: Request) -> Response:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(credentials, self.request_token):
            return JSONResponse({"message": "Bad credentials"}, 401)
        if request.query_params.get("api-version") != "2.0":
            return JSONResponse({"message": "api-version required"}, 400)
        audience = request.query_params.get("audience") or self.default_audience
        self.count(audience)
        await asyncio.sleep(self.delay)
        claims = {
            "iss": GITHUB_ISSUER,
            "aud": audience,
            "sub": GITHUB_SUBJECT,
            "repository": "octo-org/octo-repo",
            "ref": "refs/heads/main",
            "ref_type": "branch",
        }
        return JSONResponse({"value": make_jwt(self.key, claims, lifetime=self.lifetime, now=self.clock())})
