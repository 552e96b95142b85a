"""The demo's OAuth authorization server: it issues the demo user's JWT access token (RFC 9068), the "external" token
that reaches the gateway and never travels further inside.
"""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service_mesh_demo.common import DemoEnv, serve_http
from service_mesh_demo.topology import TRUST_DOMAIN
from txtoken.keys import KeySet
from txtoken.mint import encode_jws

__all__ = ["ACCESS_TOKEN_AUDIENCE", "DEMO_USERS", "IDP_ISSUER", "USER_SCOPES", "app"]

IDP_ISSUER = f"https://idp.{TRUST_DOMAIN}"
ACCESS_TOKEN_AUDIENCE = f"https://api.{TRUST_DOMAIN}"
USER_SCOPES = "orders.create orders.refund inventory.reserve payments.charge"
#: user name -> password (a demo, not a user store).
DEMO_USERS = {"alice": "wonderland"}
LIFETIME = 600


def app(keys: KeySet | None = None) -> Starlette:
    """``POST /token`` (password grant for the demo user) and ``GET /jwks``."""
    signing = keys or KeySet.generate()

    async def token(request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        username, password = form.get("username"), form.get("password")
        if form.get("grant_type") != "password":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if not isinstance(username, str) or DEMO_USERS.get(username) != password:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        requested = form.get("scope")
        scope = " ".join(s for s in str(requested or USER_SCOPES).split() if s in USER_SCOPES.split())
        now = int(time.time())
        claims = {
            "iss": IDP_ISSUER,
            "sub": username,
            "aud": ACCESS_TOKEN_AUDIENCE,
            "client_id": "shop-web",
            "scope": scope,
            "amr": ["pwd"],
            "auth_time": now,
            "iat": now,
            "exp": now + LIFETIME,
            "jti": str(uuid.uuid4()),
        }
        access_token = encode_jws(claims, signing.active, typ="at+jwt")
        return JSONResponse(
            {"access_token": access_token, "token_type": "Bearer", "expires_in": LIFETIME, "scope": scope},
            headers={"Cache-Control": "no-store"},
        )

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(signing.public_jwks())

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[Route("/token", token, methods=["POST"]), Route("/jwks", jwks), Route("/healthz", healthz)]
    )


def run() -> None:
    env = DemoEnv.load()
    key_file = env.data_dir / "idp" / "keys.json"
    keys = KeySet.load(key_file) if key_file.exists() else KeySet.generate()
    keys.save(key_file)
    (env.data_dir / "idp" / "jwks.json").write_text(json.dumps(keys.public_jwks()), encoding="utf-8")
    serve_http(app(keys), env)
