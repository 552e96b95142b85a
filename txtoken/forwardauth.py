"""Forward-auth for proxies: the protocol nginx ``auth_request``, Envoy ``ext_authz`` (HTTP service) and Traefik
``ForwardAuth`` share, so that services without txtoken in them take part in the trust domain.

The proxy sends the original request's headers, with its method and URI either in ``X-Forwarded-Method`` /
``X-Forwarded-Uri`` (Traefik; the nginx configuration sets them) or as the method and path of the check request itself
(Envoy, below an optional ``path_prefix``). The answer is 200 with headers for the proxy to add upstream, or a refusal
with the stable code in the JSON body and in the ``Txtoken-Error`` header (nginx passes a subrequest's headers, not
its body). Proxies do not pass the request body: routes cannot bind body fields here.

- ``edge``: the inbound gateway (:mod:`txtoken.gateway`): validate the access token, exchange it, answer
  ``Txn-Token: <token>``; the proxy sets it upstream and drops ``Authorization``.
- ``hop``: verify the caller's WIT and WPT when ``[hop.wimse]`` is configured (the WPT's ``aud`` is a configured
  service URL followed by the original path, never ``Host``), then the incoming ``Txn-Token``; apply the per-route
  :class:`~txtoken.policy.Policy` (path and query binding, callers), refuse a second use of one Txn-Token on a
  ``single_use`` route, and answer the verified context in the :data:`CONTEXT_HEADERS`, never a token.

Configuration: a TOML file (``txtoken forward-auth --config FILE``), see ``docs/gateway.md``.
"""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from txtoken import telemetry
from txtoken.claims import HTTP_HEADER
from txtoken.client import AsyncTokenServiceClient
from txtoken.credentials import CredentialSource, EnvCredentialSource, FileCredentialSource, KeyPairAssertionSource
from txtoken.errors import ConfigurationError, TokenDuplicated, TokenMissing, TokenReplayed, TxTokenError
from txtoken.gateway import EdgeRequest, GatewayRoute, InboundGateway, RequestDetails
from txtoken.keys import KeySet
from txtoken.keysource import JwksFileKeySource, KeySource, RemoteJwksKeySource
from txtoken.policy import Policy, Rule
from txtoken.replay import MemoryReplayStore, ReplayStore
from txtoken.replay_redis import RedisReplayStore
from txtoken.service.accesstoken import AccessTokenValidator, issuer_configs
from txtoken.verify import TxnTokenVerifier, VerifiedTxnToken
from txtoken.wimse import CallerVerifier, VerifiedCaller, WitVerifier, WptVerifier, http_audiences, target_uri

__all__ = ["CONTEXT_HEADERS", "ERROR_HEADER", "ForwardAuth", "ForwardAuthConfig", "context_headers", "load_config"]

logger = logging.getLogger("txtoken.forwardauth")

#: The header carrying a refusal's stable code (for proxies that pass headers, not bodies, of a refusal).
ERROR_HEADER = "Txtoken-Error"
#: Hop mode's answer: header → what it carries. Values are percent-encoded UTF-8 (RFC 3986) where they hold ``%`` or
#: anything outside visible ASCII; JSON values are compact and ASCII-only.
CONTEXT_HEADERS = {
    "Txn-Id": "the txn claim (the transaction's identifier)",
    "Txn-Sub": "the sub claim",
    "Txn-Scope": "the scope claim",
    "Txn-Requester": "the req_wl claim (the workload that requested the token)",
    "Txn-Tctx": "the tctx claim, as JSON",
    "Txn-Rctx": "the rctx claim, as JSON",
    "Txn-Caller": "the verified calling workload's Workload Identifier (its WIT's sub); empty without one",
}
_TXN_HEADER = HTTP_HEADER.lower()
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_VISIBLE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RouteConfig(_Model):
    """An edge route: what to request at the TTS and which request parts become ``request_details``."""

    route: str
    scope: str = Field(min_length=1)
    path: dict[str, str] = {}
    query: dict[str, str] = {}
    headers: dict[str, str] = {}


class EdgeConfig(_Model):
    """The gateway's TTS and its own credential (one of: a platform JWT in a file or an environment variable, or a
    key pair registered with the TTS that signs a client assertion per request), the trusted access-token issuers
    (as the TTS's ``[issuers.NAME]``) and the routes."""

    token_endpoint: str
    credential_file: Path | None = None
    credential_env: str | None = None
    key_file: Path | None = None
    workload_id: str | None = None
    issuers: dict[str, dict[str, Any]]
    routes: list[RouteConfig]


class HopWimseConfig(_Model):
    """Hop mode's WIMSE binding: the anchors of the callers' WITs (one of ``wit_jwks_uri``, ``wit_jwks_file``), the
    WIT issuers accepted, and this service's URLs (the WPT ``aud`` is one of them followed by the original path).
    With ``caller_required`` every request needs a WIT and WPT; without, only those that carry them are checked and
    policy rules with ``callers`` require them per route."""

    wit_jwks_uri: str | None = None
    wit_jwks_file: Path | None = None
    wit_issuers: list[str] | None = None
    service_urls: list[str] = Field(min_length=1)
    caller_required: bool = True


class HopConfig(_Model):
    """Hop mode: the policy, the single-use routes, the replay store (in memory, or Redis at ``replay_redis_url``
    for replicas) and the optional WIMSE binding."""

    policy: Path
    single_use: list[str] = []
    max_single_use_entries: int = Field(default=100_000, ge=1)
    replay_redis_url: str | None = None
    wimse: HopWimseConfig | None = None


class ForwardAuthConfig(_Model):
    """The forward-auth service's configuration (the TOML file's tables)."""

    mode: Literal["edge", "hop"]
    trust_domain: str = Field(min_length=1)
    tts_identifier: str = Field(min_length=1)
    tts_jwks_uri: str | None = None
    tts_jwks_file: Path | None = None
    path_prefix: str = ""
    trusted_proxies: list[str] = []
    allow_http: bool = False
    edge: EdgeConfig | None = None
    hop: HopConfig | None = None


def load_config(path: str | Path) -> ForwardAuthConfig:
    """The configuration in a TOML file; ``ConfigurationError`` names the bad field."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from None
    try:
        config = ForwardAuthConfig.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise ConfigurationError(f"{'.'.join(str(p) for p in problem['loc'])}: {problem['msg']}") from None
    if getattr(config, config.mode) is None:
        raise ConfigurationError(f"mode {config.mode!r} needs a [{config.mode}] table")
    if (config.tts_jwks_uri is None) == (config.tts_jwks_file is None):
        raise ConfigurationError("give exactly one of tts_jwks_uri, tts_jwks_file")
    wimse = config.hop.wimse if config.hop is not None else None
    if wimse is not None:
        if (wimse.wit_jwks_uri is None) == (wimse.wit_jwks_file is None):
            raise ConfigurationError("hop.wimse: give exactly one of wit_jwks_uri, wit_jwks_file")
        if any(target_uri(url) is None for url in wimse.service_urls):
            raise ConfigurationError("hop.wimse.service_urls: each must be an absolute URI (https://host[/prefix])")
    return config


def _keys(config: ForwardAuthConfig, uri: str | None, file: Path | None) -> KeySource:
    if file is not None:
        return JwksFileKeySource(file)
    url = str(uri)
    return RemoteJwksKeySource(url, allow_http=config.allow_http or urlsplit(url).hostname in _LOOPBACK_HOSTS)


def _replay_store(hop: HopConfig) -> ReplayStore:
    if hop.replay_redis_url is not None:
        return RedisReplayStore(hop.replay_redis_url)
    return MemoryReplayStore(hop.max_single_use_entries)


def _callers(config: ForwardAuthConfig, wimse: HopWimseConfig, replay: ReplayStore) -> CallerVerifier:
    anchors = _keys(config, wimse.wit_jwks_uri, wimse.wit_jwks_file)
    wits = WitVerifier(anchors, trust_domain=config.trust_domain, issuers=wimse.wit_issuers)
    return CallerVerifier(wits, WptVerifier(replay_store=replay))


def _credential(edge: EdgeConfig, tts_identifier: str) -> CredentialSource:
    given = [c for c in (edge.credential_file, edge.credential_env, edge.key_file) if c is not None]
    if len(given) != 1:
        raise ConfigurationError("edge: give exactly one of credential_file, credential_env, key_file")
    if edge.credential_file is not None:
        return FileCredentialSource(edge.credential_file)
    if edge.credential_env is not None:
        return EnvCredentialSource(edge.credential_env)
    if edge.key_file is None or not edge.workload_id:
        raise ConfigurationError("edge: key_file needs workload_id (the client assertion's iss and sub)")
    key = KeySet.load(edge.key_file).active
    return KeyPairAssertionSource(key, workload_id=edge.workload_id, audience=tts_identifier)


def _edge_gateway(config: ForwardAuthConfig, edge: EdgeConfig, verifier: TxnTokenVerifier) -> InboundGateway:
    credential = _credential(edge, config.tts_identifier)
    routes = [
        GatewayRoute(r.route, r.scope, RequestDetails(path=r.path, query=r.query, headers=r.headers))
        for r in edge.routes
    ]
    return InboundGateway(
        access_tokens=AccessTokenValidator(issuer_configs(edge.issuers), default_audience=config.tts_identifier),
        token_service=AsyncTokenServiceClient(
            edge.token_endpoint, credential=credential, trust_domain=config.trust_domain, allow_http=config.allow_http
        ),
        verifier=verifier,
        routes=routes,
        trusted_proxies=config.trusted_proxies,
    )


def _txn_token(headers: Iterable[tuple[str, str]]) -> str:
    values = [v for k, v in headers if k == _TXN_HEADER]
    if not values:
        raise TokenMissing(f"no {HTTP_HEADER} header")
    if len(values) > 1:
        raise TokenDuplicated(f"more than one {HTTP_HEADER} header")
    return values[0]


def _compact(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), separators=(",", ":"), ensure_ascii=True, sort_keys=True)


def context_headers(txn: VerifiedTxnToken, caller: VerifiedCaller | None = None) -> list[tuple[str, str]]:
    """Hop mode's answer headers for a verified token and caller (see :data:`CONTEXT_HEADERS`)."""
    values = [
        ("Txn-Id", txn.txn),
        ("Txn-Sub", txn.sub),
        ("Txn-Scope", txn.scope),
        ("Txn-Requester", txn.req_wl),
        ("Txn-Tctx", _compact(txn.tctx)),
        ("Txn-Rctx", _compact(txn.rctx)),
        # always answered, so that the proxy replaces a client's value (nginx drops an empty one)
        ("Txn-Caller", "" if caller is None else caller.workload),
    ]
    return [(name, quote(value, safe=_VISIBLE)) for name, value in values]


class ForwardAuth:
    """The forward-auth service as a pure ASGI app; build it with :meth:`from_config`."""

    def __init__(
        self,
        config: ForwardAuthConfig,
        *,
        verifier: TxnTokenVerifier,
        gateway: InboundGateway | None = None,
        policy: Policy | None = None,
        replay: ReplayStore | None = None,
        callers: CallerVerifier | None = None,
    ) -> None:
        self.config = config
        self._verifier = verifier
        self._gateway = gateway
        self._policy = policy
        hop = config.hop
        self._single_use = Policy([Rule(route) for route in (hop.single_use if hop else [])])
        self._replay = replay or MemoryReplayStore(hop.max_single_use_entries if hop else 1)
        self._wimse = hop.wimse if hop is not None else None
        if callers is not None and self._wimse is None:
            raise ConfigurationError("checking callers needs a [hop.wimse] table (service_urls, the WPT audience)")
        self._callers = callers
        #: A store this app made from its configuration, closed at shutdown.
        self._own_store: RedisReplayStore | None = None

    @classmethod
    def from_config(cls, config: ForwardAuthConfig, *, replay: ReplayStore | None = None) -> ForwardAuth:
        """The service ``config`` describes; ``replay`` replaces the configured replay store (single-use routes and
        WPT ``jti`` values)."""
        keys = _keys(config, config.tts_jwks_uri, config.tts_jwks_file)
        verifier = TxnTokenVerifier(keys, trust_domain=config.trust_domain, issuer=config.tts_identifier)
        if config.mode == "edge" and config.edge is not None:
            return cls(config, verifier=verifier, gateway=_edge_gateway(config, config.edge, verifier))
        if config.mode == "hop" and config.hop is not None:
            hop = config.hop
            store = replay or _replay_store(hop)
            callers = None if hop.wimse is None else _callers(config, hop.wimse, store)
            app = cls(config, verifier=verifier, policy=Policy.load(hop.policy), replay=store, callers=callers)
            if replay is None and isinstance(store, RedisReplayStore):
                app._own_store = store
            return app
        raise ConfigurationError(f"mode {config.mode!r} needs a [{config.mode}] table")

    def _original(self, scope: Mapping[str, Any], headers: list[tuple[str, str]]) -> tuple[str, str, str, str]:
        """The original request's method, path, path as sent (percent-encoded) and query string."""
        given = dict(headers)
        method = given.get("x-forwarded-method") or scope["method"]
        uri = given.get("x-forwarded-uri") or given.get("x-original-uri")
        if uri is None:
            path: str = scope["path"]
            raw_path = bytes(scope.get("raw_path") or path.encode("utf-8")).decode("latin-1")
            prefix = self.config.path_prefix
            if prefix and path.startswith(prefix):
                path = path[len(prefix) :] or "/"
            if prefix and raw_path.startswith(prefix):
                raw_path = raw_path[len(prefix) :] or "/"
            return method.upper(), path, raw_path, scope.get("query_string", b"").decode("latin-1")
        parts = urlsplit(uri)
        return method.upper(), parts.path or "/", parts.path or "/", parts.query

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        method, path, raw_path, query = self._original(scope, headers)
        try:
            if self._gateway is not None:
                answer = await self._edge(self._gateway, scope, headers, method, path, query)
            elif self._policy is not None:
                answer = await self._hop(self._policy, headers, method, path, raw_path, query)
            else:
                raise ConfigurationError("neither a gateway nor a policy")
        except TxTokenError as exc:
            await self._refuse(send, exc, method, path)
            return
        await _send(send, 200, [*answer, ("Cache-Control", "no-store")], b"")

    @staticmethod
    async def _edge(
        gateway: InboundGateway,
        scope: Mapping[str, Any],
        headers: list[tuple[str, str]],
        method: str,
        path: str,
        query: str,
    ) -> list[tuple[str, str]]:
        client = scope.get("client")
        admission = await gateway.admit(
            EdgeRequest(method, path, headers, query_string=query, peer=client[0] if client else None)
        )
        return [(HTTP_HEADER, admission.txn.token)]

    async def _hop(
        self, policy: Policy, headers: list[tuple[str, str]], method: str, path: str, raw_path: str, query: str
    ) -> list[tuple[str, str]]:
        caller = None
        if self._callers is not None and self._wimse is not None:  # WIT, then WPT, then the Txn-Token
            caller = await self._callers.averify_http(
                headers,
                audience=http_audiences(self._wimse.service_urls, raw_path),
                required=self._wimse.caller_required,
            )
        txn = await self._verifier.averify(_txn_token(headers))
        workload = None if caller is None else caller.workload
        policy.authorize_http(txn, method=method, path=path, query_string=query, caller=workload)
        if self._single_use.match_http(method, path) is not None:
            key = f"txn-once:{txn.txn}:{method} {path}"
            if not await self._replay.afirst_use(key, txn.expires_at):
                raise TokenReplayed("this Txn-Token was already used for this request")
        return context_headers(txn, caller)

    async def _refuse(self, send: Any, exc: TxTokenError, method: str, path: str) -> None:
        # nginx passes only 401 and 403 of a check (anything else becomes 500): request problems answer 403.
        status = exc.http_status if exc.http_status in (401, 403) else 403 if exc.http_status < 500 else 503
        logger.info(
            "forward-auth refused: %s %r status=%s code=%s",
            method,
            path,
            status,
            exc.code,
            extra={"method": method, "path": path, "status": status, "code": exc.code},
        )
        telemetry.refusal("http", exc.code)
        body = json.dumps({"error": exc.code, "error_description": exc.message}).encode("utf-8")
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store"), (ERROR_HEADER, exc.code)]
        if status == 401:
            scheme = "Bearer" if self._gateway is not None else HTTP_HEADER
            headers.append(("WWW-Authenticate", f'{scheme} error="{exc.code}"'))
        await _send(send, status, headers, body)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._gateway is not None:
                    await self._gateway.aclose()
                if self._own_store is not None:
                    await self._own_store.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _send(send: Any, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw.append((b"content-length", str(len(body)).encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
