"""A stand-in for the Txn-Token Service's replacement grant, shaped like RFC 8693 and draft §13.15.

Used by the chain test until ``txtoken.service`` is on the main branch: it verifies the presented Txn-Token, keeps
``txn``, ``sub`` and ``aud``, narrows ``scope`` (never widens it), adds ``request_details`` members to ``tctx``
(never overwriting one) and signs with the trust domain's key, as the real TTS does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from txtoken import TxnTokenMinter, TxnTokenVerifier
from txtoken.claims import GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_TXN_TOKEN
from txtoken.errors import TxTokenError


def replacement_app(minter: TxnTokenMinter, verifier: TxnTokenVerifier, *, requester: str) -> Starlette:
    async def token(request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode()))
        if (
            form.get("grant_type") != GRANT_TYPE_TOKEN_EXCHANGE
            or form.get("subject_token_type") != TOKEN_TYPE_TXN_TOKEN
        ):
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        try:
            old = verifier.verify(str(form.get("subject_token", "")))
        except TxTokenError:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        scope = str(form.get("scope") or old.claims.scope)
        details = json.loads(str(form.get("request_details") or "{}"))
        if not set(scope.split()) <= old.scopes:
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        if set(details) & set(old.tctx):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        issued = minter.mint(
            txn=old.txn, sub=old.sub, scope=scope, req_wl=requester, tctx={**old.tctx, **details}, rctx=old.rctx
        )
        return JSONResponse(
            {
                "access_token": issued,
                "issued_token_type": TOKEN_TYPE_TXN_TOKEN,
                "token_type": "N_A",
                "expires_in": minter.lifetime,
                "scope": scope,
            }
        )

    return Starlette(routes=[Route("/token", token, methods=["POST"])])


@dataclass(frozen=True)
class Replacement:
    access_token: str = field(repr=False)
    scope: str


class AsyncReplacementClient:
    """Speaks the replacement grant to :func:`replacement_app` (the subset of the TTS client augment uses)."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def replace(
        self,
        txn_token: str,
        *,
        scope: str | None = None,
        request_details: Mapping[str, Any] | None = None,
        request_context: Mapping[str, Any] | None = None,
    ) -> Replacement:
        form = {
            "grant_type": GRANT_TYPE_TOKEN_EXCHANGE,
            "requested_token_type": TOKEN_TYPE_TXN_TOKEN,
            "subject_token": txn_token,
            "subject_token_type": TOKEN_TYPE_TXN_TOKEN,
            "request_details": json.dumps(dict(request_details or {})),
        }
        if scope:
            form["scope"] = scope
        async with httpx.AsyncClient() as client:
            response = await client.post(self.url, data=form)
        response.raise_for_status()
        body = response.json()
        return Replacement(body["access_token"], body["scope"])
