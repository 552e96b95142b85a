"""Starlette apps behind ``TxnTokenMiddleware`` that report what their handlers saw."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from txtoken import TxnTokenVerifier, current_transaction, require_transaction
from txtoken.policy import Policy
from txtoken_asgi import TxnTokenMiddleware


def seen(request: Request) -> dict[str, Any]:
    txn = require_transaction()
    return {
        "txn": txn.txn,
        "sub": txn.sub,
        "tctx": dict(txn.tctx),
        "state": request.state.txn.txn,
        "scope": request.scope["txtoken"].txn,
        "user": request.user.display_name,
        "auth_scopes": sorted(request.auth.scopes),
        "from_lifespan": getattr(request.state, "from_lifespan", None),
    }


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse(seen(request))


def whoami_sync(request: Request) -> JSONResponse:
    return JSONResponse(seen(request))


@requires("trade")
async def trade(request: Request) -> JSONResponse:
    return JSONResponse({"sub": request.user.display_name})


@requires("admin")
async def admin(request: Request) -> JSONResponse:
    return JSONResponse({"sub": request.user.display_name})


async def order(request: Request) -> JSONResponse:
    return JSONResponse({"symbol": request.path_params["symbol"], "qty": request.query_params.get("qty")})


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok" if current_transaction() is None else "unexpected transaction")


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            txn = current_transaction()
            yield f"{txn.txn if txn else None}\n".encode()

    return StreamingResponse(chunks())


async def ws_whoami(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"txn": require_transaction().txn, "user": websocket.user.display_name})
    await websocket.close()


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    yield {"from_lifespan": "yes"}


def app(
    verifier: TxnTokenVerifier, *, policy: Policy | None = None, exempt_paths: Iterable[str] = ("/health",)
) -> Starlette:
    return Starlette(
        routes=[
            Route("/whoami", whoami),
            Route("/whoami-sync", whoami_sync),
            Route("/trade", trade),
            Route("/admin", admin),
            Route("/orders/{symbol}", order, methods=["POST"]),
            Route("/health", health),
            Route("/public/info", health),
            Route("/stream", stream),
            WebSocketRoute("/ws", ws_whoami),
        ],
        middleware=[Middleware(TxnTokenMiddleware, verifier=verifier, policy=policy, exempt_paths=exempt_paths)],
        lifespan=lifespan,
    )
