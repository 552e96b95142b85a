"""A STAND-IN authorization server of another domain, built to the RFCs (node-oidc-provider supports neither grant):

- RFC 7523 §2.1 JWT bearer grant: ``assertion`` must be one JWT signed by a trusted platform key, with ``iss``,
  ``sub``, ``exp`` and this server's issuer identifier as ``aud`` (§3); otherwise ``invalid_grant``;
- RFC 8693 token exchange: ``subject_token`` of type ``...:jwt`` checked the same way, ``requested_token_type``
  access_token, ``audience`` required; answers ``issued_token_type`` access_token.

Issued access tokens are opaque; :attr:`StandInAs.issued` maps each to its subject and audience, for the stand-in's
protected API.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from txtoken.claims import GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT
from txtoken.credentials.external import GRANT_TYPE_JWT_BEARER
from txtoken.errors import TxTokenError
from txtoken.keysource import KeySource
from txtoken.service.jwtcheck import NO_TYP, JwtRules, verify_jwt

ISSUER = "https://as.partner.example"


@dataclass
class StandInAs:
    platform_keys: KeySource
    issued: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)

    async def _assertion_claims(self, token: str) -> dict[str, Any]:
        rules = JwtRules(frozenset({NO_TYP, "jwt"}), frozenset({ISSUER}), ("iss", "sub", "aud", "exp"))
        return await verify_jwt(
            token, keys=self.platform_keys, algorithms=frozenset({"ES256"}), rules=rules, now=time.time()
        )

    def app(self) -> Starlette:
        async def token(request: Request) -> JSONResponse:
            form = dict(parse_qsl((await request.body()).decode("ascii", "replace")))
            self.requests.append({k: v for k, v in form.items() if k in ("grant_type", "scope", "audience")})
            grant = form.get("grant_type")
            if grant == GRANT_TYPE_JWT_BEARER:
                presented, audience = form.get("assertion", ""), "https://api.partner.example"
            elif grant == GRANT_TYPE_TOKEN_EXCHANGE:
                if form.get("subject_token_type") != TOKEN_TYPE_JWT or "audience" not in form:
                    return JSONResponse({"error": "invalid_request"}, status_code=400)
                if form.get("requested_token_type", TOKEN_TYPE_ACCESS_TOKEN) != TOKEN_TYPE_ACCESS_TOKEN:
                    return JSONResponse({"error": "invalid_request"}, status_code=400)
                presented, audience = form.get("subject_token", ""), form["audience"]
            else:
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            try:
                claims = await self._assertion_claims(presented)
            except TxTokenError:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            access_token = secrets.token_urlsafe(24)
            self.issued[access_token] = {"sub": claims["sub"], "aud": audience, "scope": form.get("scope")}
            body: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer", "expires_in": 60}
            if grant == GRANT_TYPE_TOKEN_EXCHANGE:
                body["issued_token_type"] = TOKEN_TYPE_ACCESS_TOKEN
            return JSONResponse(body, headers={"Cache-Control": "no-store"})

        return Starlette(routes=[Route("/token", token, methods=["POST"])])
