"""The inbound gateway, framework-free: turn an external request with an OAuth access token into a transaction.

For each request to a declared route, :class:`InboundGateway`

1. validates the access token (``Authorization: Bearer``) with the TTS's own validation
   (:class:`~txtoken.service.AccessTokenValidator`: RFC 9068 JWTs from configured issuers, RFC 7662 introspection
   for opaque tokens);
2. exchanges it at the Txn-Token Service (§1.5 of the spec digest) with ``request_context`` = the client address
   (taken from ``X-Forwarded-For`` only behind a configured trusted proxy) and the authentication method, and
   ``request_details`` = the route's **declared** mapping of path parameters, query parameters, JSON body fields and
   headers (nothing else of the request reaches the TTS);
3. verifies the Txn-Token it got back, so the caller can run the rest of the request inside it.

Refusals (:data:`REFUSALS`): 401 ``invalid_token``, 403 ``access_denied`` / ``insufficient_scope``, 400
``invalid_request``, 413 ``request_too_large``, 503 ``temporarily_unavailable``; their messages are fixed, never
taken from the request or the TTS's answer. Adapters: ``txtoken_asgi.GatewayMiddleware``
(ASGI) and ``txtoken forward-auth --mode edge`` (nginx, Envoy, Traefik).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from txtoken.claims import TOKEN_TYPE_ACCESS_TOKEN
from txtoken.client import AsyncTokenServiceClient
from txtoken.errors import (
    AccessDenied,
    AccessTokenInvalid,
    InsufficientScope,
    InvalidRequest,
    InvalidScope,
    RequestTooLarge,
    TokenRejected,
    TokenServiceError,
    TokenServiceUnavailable,
    TxTokenError,
)
from txtoken.policy import ABSENT, Policy, Rule, member as member_at
from txtoken.service.accesstoken import AccessToken, AccessTokenValidator
from txtoken.verify import TxnTokenVerifier, VerifiedTxnToken

__all__ = [
    "DEFAULT_MAX_BODY",
    "Admission",
    "EdgeRequest",
    "GatewayRoute",
    "InboundGateway",
    "RequestDetails",
    "bearer_token",
    "client_address",
]

logger = logging.getLogger("txtoken.gateway")

#: The largest JSON body the gateway reads to build ``request_details`` (bytes).
DEFAULT_MAX_BODY = 16 * 1024
#: ``rctx.authn`` when the access token names no authentication method (``amr``): an OAuth 2.0 access token.
OAUTH_AUTHN = "urn:ietf:rfc:6749"

Derive = Callable[[Mapping[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class RequestDetails:
    """Where each ``request_details`` member comes from: member name → path parameter, query parameter, dotted JSON
    body field (``order.item``), or header name. Every declared value is required; nothing undeclared is sent."""

    path: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    def extract(
        self,
        path_params: Mapping[str, str],
        query_string: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | None,
    ) -> dict[str, Any]:
        """The declared values of one request; ``InvalidRequest`` when one is missing or ambiguous."""
        details: dict[str, Any] = {member: path_params[name] for member, name in self.path.items()}
        if self.query:
            query = parse_qsl(query_string, keep_blank_values=True)
            for member, name in self.query.items():
                details[member] = _single([v for k, v in query if k == name])
        for member, name in self.headers.items():
            details[member] = _single([v for k, v in headers if k == name.lower()])
        if self.body:
            document = _json_object(body or b"")
            for member, dotted in self.body.items():
                value = member_at(document, dotted)
                if value is ABSENT:
                    raise InvalidRequest("the request lacks a value this route needs")
                details[member] = value
        return details


def _single(values: list[str]) -> str:
    if len(values) != 1:
        raise InvalidRequest("the request lacks a value this route needs, or repeats it")
    return values[0]


def _json_object(body: bytes) -> Mapping[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidRequest("the request body is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest("the request body is not a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class GatewayRoute:
    """One external route: ``route`` (``"POST /api/orders/{order_id}"``, the policy's syntax), the ``scope`` to
    request, the declared ``details``, and optionally ``derive``: a pure function from the declared values to the
    ``request_details`` sent (to add values the gateway computes, such as a price); it raises ``ValueError``,
    ``KeyError`` or ``TypeError`` for a request it cannot serve (answered 400)."""

    route: str
    scope: str
    details: RequestDetails = field(default_factory=RequestDetails)
    derive: Derive | None = None

    @property
    def reads_body(self) -> bool:
        return bool(self.details.body)


@dataclass(frozen=True, slots=True)
class EdgeRequest:
    """What the gateway needs of an external request. ``headers`` are ``(lower-case name, value)`` pairs; ``peer``
    is the address of the TCP peer; ``body`` is the request body when the route reads it."""

    method: str
    path: str
    headers: Sequence[tuple[str, str]] = field(repr=False)
    query_string: str = ""
    peer: str | None = None
    body: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted request: the verified Txn-Token to run it in, the access token's subject, the route."""

    txn: VerifiedTxnToken
    subject: AccessToken
    route: GatewayRoute


def bearer_token(headers: Sequence[tuple[str, str]]) -> str:
    """The token of the one ``Authorization: Bearer`` header (RFC 6750 §2.1); ``AccessTokenInvalid`` otherwise."""
    values = [v for k, v in headers if k == "authorization"]
    if len(values) != 1:
        raise AccessTokenInvalid("a bearer access token is required")
    scheme, _, token = values[0].partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise AccessTokenInvalid("a bearer access token is required")
    return token


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_address(peer: str | None, headers: Sequence[tuple[str, str]], trusted: Sequence[Network]) -> str:
    """The client's address: the TCP peer, unless the peer is a trusted proxy; then the right-most
    ``X-Forwarded-For`` entry that is not a trusted proxy (entries left of it could be forged by the client)."""
    current = _address(peer) if peer else None
    if current is None:
        return "unknown"
    forwarded = [part for k, v in headers if k == "x-forwarded-for" for part in v.split(",")]
    for entry in reversed(forwarded):
        if not any(current in network for network in trusted):
            break
        previous = _address(entry)
        if previous is None:
            break
        current = previous
    return str(current)


#: The errors :meth:`InboundGateway.admit` raises: all an adapter has to answer.
REFUSALS = (AccessTokenInvalid, AccessDenied, InvalidRequest, RequestTooLarge, TokenServiceUnavailable)


def _refusal(exc: TxTokenError) -> TxTokenError:
    """The gateway's answer for an error of the validation, the exchange or the verification."""
    if isinstance(exc, TokenRejected | InvalidRequest):
        return AccessTokenInvalid("the access token is not valid")
    if isinstance(exc, InvalidScope):
        return InsufficientScope("the access token does not grant this request")
    if isinstance(exc, AccessDenied) or (isinstance(exc, TokenServiceError) and exc.http_status == 400):
        return AccessDenied("this request is not allowed")
    return TokenServiceUnavailable("the request cannot be authorized now")


class InboundGateway:
    """Validates, exchanges and verifies, for the declared ``routes`` (see the module docstring).

    - ``access_tokens``: the access-token validation (:class:`~txtoken.service.AccessTokenValidator`);
    - ``token_service``: the gateway's TTS client (it authenticates with the gateway's own credential);
    - ``verifier``: verifies the issued Txn-Token (the trust domain's keys);
    - ``trusted_proxies``: addresses or networks (``"10.0.0.0/8"``) whose ``X-Forwarded-For`` is believed;
    - ``max_body``: the largest JSON body read for ``request_details``.
    """

    def __init__(
        self,
        *,
        access_tokens: AccessTokenValidator,
        token_service: AsyncTokenServiceClient,
        verifier: TxnTokenVerifier,
        routes: Iterable[GatewayRoute],
        trusted_proxies: Iterable[str] = (),
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.routes = {route.route: route for route in routes}
        self._router = Policy([Rule(route) for route in self.routes])
        self._access_tokens = access_tokens
        self._tts = token_service
        self._verifier = verifier
        self._trusted = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        self.max_body = max_body

    def route_for(self, method: str, path: str) -> tuple[GatewayRoute, Mapping[str, str]] | None:
        """The declared route serving ``method path`` and its path parameters; None for an undeclared route."""
        match = self._router.match_http(method, path)
        return None if match is None else (self.routes[match.rule.route], match.path_params)

    async def admit(self, request: EdgeRequest) -> Admission:
        """Validate, exchange and verify; raises one of :data:`REFUSALS` (an undeclared route: ``access_denied``)."""
        try:
            route, token, details = self._read(request)
        except TxTokenError as exc:
            raise self._refused(request, exc, exc) from None
        try:
            subject = await self._access_tokens.validate(token)
            issued = await self._tts.exchange(
                subject_token=token,
                subject_token_type=TOKEN_TYPE_ACCESS_TOKEN,
                scope=route.scope,
                request_context={
                    "req_ip": client_address(request.peer, request.headers, self._trusted),
                    "authn": _authn(subject),
                },
                request_details=details,
            )
            txn = await self._verifier.averify(issued.access_token)
        except TxTokenError as exc:
            raise self._refused(request, _refusal(exc), exc) from None
        return Admission(txn, subject, route)

    def _read(self, request: EdgeRequest) -> tuple[GatewayRoute, str, dict[str, Any]]:
        """The route, the bearer token and the request details, or the gateway's own refusal."""
        found = self.route_for(request.method, request.path)
        if found is None:
            raise AccessDenied("this request is not allowed")
        route, path_params = found
        if request.body is not None and len(request.body) > self.max_body:
            raise RequestTooLarge("the request body is too large")
        token = bearer_token(request.headers)
        details = route.details.extract(path_params, request.query_string, request.headers, request.body)
        if route.derive is not None:
            try:
                details = dict(route.derive(details))
            except (ValueError, KeyError, TypeError):
                raise InvalidRequest("the request cannot be served as given") from None
        return route, token, details

    @staticmethod
    def _refused(request: EdgeRequest, refusal: TxTokenError, cause: TxTokenError) -> TxTokenError:
        logger.info(
            "refused an external request: %s %r status=%s code=%s cause=%s",
            request.method,
            request.path,
            refusal.http_status,
            refusal.code,
            cause.code,
            extra={"method": request.method, "path": request.path, "code": refusal.code, "cause": cause.code},
        )
        return refusal

    async def aclose(self) -> None:
        """Close the TTS client and the introspection clients."""
        await self._tts.aclose()
        await self._access_tokens.aclose()


def _authn(subject: AccessToken) -> str:
    amr = subject.claims.get("amr")
    if isinstance(amr, list) and amr and isinstance(amr[0], str):
        return amr[0]
    return OAUTH_AUTHN
