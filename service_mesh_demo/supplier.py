"""supplier (another domain, ``supplier.example``): its own authorization server and a stock API.

It knows nothing of txtoken: it trusts the shop's platform as an issuer of workload credentials (its JWKS) and
implements the RFC 7523 §2.1 JWT bearer grant (the assertion's ``aud`` must be this AS, §3). Its API wants its own
access tokens, and refuses a request that carries any of the shop's internal headers (they must never leave the
shop's trust domain).
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import parse_qsl

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service_mesh_demo.common import DemoEnv, serve_http
from service_mesh_demo.platform import PLATFORM_ISSUER
from service_mesh_demo.topology import SUPPLIER_AS

__all__ = ["GRANT_TYPE_JWT_BEARER", "app"]

GRANT_TYPE_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_LIFETIME = 300
_INTERNAL = ("txn-token", "workload-identity-token", "workload-proof-token")


def app(env: DemoEnv) -> Starlette:
    platform_keys = jwt.PyJWKClient(f"{env.urls['platform']}/jwks")
    issued: dict[str, dict[str, Any]] = {}

    async def token(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("ascii", "replace")))
        if form.get("grant_type") != GRANT_TYPE_JWT_BEARER:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        try:
            assertion = form.get("assertion", "")
            key = platform_keys.get_signing_key_from_jwt(assertion)
            claims = jwt.decode(
                assertion,
                key.key,
                algorithms=["ES256"],
                audience=SUPPLIER_AS,
                issuer=PLATFORM_ISSUER,
                options={"require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.PyJWTError:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        access_token = secrets.token_urlsafe(24)
        issued[access_token] = {"sub": claims["sub"], "exp": time.time() + TOKEN_LIFETIME}
        body = {"access_token": access_token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def stock(request: Request) -> Response:
        if any(name in request.headers for name in _INTERNAL):
            return JSONResponse({"error": "internal_header_leaked"}, status_code=400)
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        grant = issued.get(presented) if scheme.lower() == "bearer" else None
        if grant is None or time.time() >= grant["exp"]:
            return JSONResponse({"error": "invalid_token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return JSONResponse({"item": request.path_params["item"], "available": 100, "client": grant["sub"]})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/token", token, methods=["POST"]),
            Route("/stock/{item}", stock),
            Route("/healthz", healthz),
        ]
    )


def run() -> None:
    env = DemoEnv.load()
    serve_http(app(env), env)
