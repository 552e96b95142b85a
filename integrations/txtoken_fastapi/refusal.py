"""How the FastAPI dependencies refuse: FastAPI's ``HTTPException`` (or a WebSocket close), and an optional exception
handler that answers as ``TxnTokenMiddleware`` does."""

from __future__ import annotations

import logging

from fastapi import HTTPException, WebSocketException, status
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from txtoken.claims import HTTP_HEADER
from txtoken.errors import TxTokenError
from txtoken_asgi.middleware import refusal_response

__all__ = ["TxnTokenHTTPException", "problem_details", "refusal"]

logger = logging.getLogger("txtoken.fastapi")


class TxnTokenHTTPException(HTTPException):
    """A refused Txn-Token or caller as FastAPI's ``HTTPException``.

    The default body is ``{"detail": {"error": code, "error_description": message}}`` with status 400 (a WIT or WPT
    refusal), 401 (plus ``WWW-Authenticate``), 403 or 503. ``error`` is the :class:`~txtoken.errors.TxTokenError`
    with its stable ``code``; an exception handler registered for this class (:func:`problem_details`, or your own)
    shapes the body differently.
    """

    def __init__(self, error: TxTokenError) -> None:
        headers = {"Cache-Control": "no-store"}
        if error.http_status == 401:
            headers["WWW-Authenticate"] = f'{HTTP_HEADER} error="{error.code}"'
        super().__init__(error.http_status, {"error": error.code, "error_description": error.message}, headers)
        self.error = error


def refusal(connection: HTTPConnection, exc: TxTokenError, what: str) -> HTTPException | WebSocketException:
    """The exception that refuses ``connection`` for ``exc`` (logged with its status and code only): a
    :class:`TxnTokenHTTPException`, or on a WebSocket route a close with code 1008 and the error code as reason."""
    logger.info("refused %s: status=%s code=%s", what, exc.http_status, exc.code)
    if connection.scope["type"] == "websocket":
        return WebSocketException(status.WS_1008_POLICY_VIOLATION, exc.code)
    return TxnTokenHTTPException(exc)


async def problem_details(request: Request, exc: TxnTokenHTTPException) -> Response:
    """An exception handler answering refusals with ``TxnTokenMiddleware``'s bodies: a WIT or WPT refusal as an RFC
    9457 problem-details body (400, ``application/problem+json``, with ``error`` and ``error_description``), every
    other one as ``{"error": code, "error_description": message}``. Register it when building the app:
    ``FastAPI(exception_handlers={TxnTokenHTTPException: problem_details})``."""
    code, headers, body = refusal_response(exc.error)
    return Response(body, code, headers={name.decode("latin-1"): value.decode("latin-1") for name, value in headers})
