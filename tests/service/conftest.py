"""Fixtures for the Txn-Token Service tests.

- ``platform``: test "platform issuers" (an OAuth AS, an OpenID provider, Kubernetes, SPIFFE, GitHub Actions,
  GitLab CI) whose JWKS, and an RFC 7662 introspection endpoint, are served by a real uvicorn server on loopback;
  it mints their tokens in the shapes of the spec digest §5.3.
- ``tts``: a TTS (production mode, keys in a shared directory) with a policy for a gateway (registered key pair),
  orders (Kubernetes service account), payments (mTLS via the trusted proxy), batch (SPIFFE JWT-SVID) and a CI job
  (GitHub Actions), served by uvicorn on loopback.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from txtoken.claims import (
    CLIENT_ASSERTION_TYPE_JWT_BEARER,
    GRANT_TYPE_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_TXN_TOKEN,
)
from txtoken.client import TokenServiceClient
from txtoken.keys import KeySet, SigningKey
from txtoken.keysource import RemoteJwksKeySource
from txtoken.mint import encode_jws
from txtoken.service import ServiceSettings, TokenService, create_app, load_settings
from txtoken.verify import TxnTokenVerifier

from ..conftest import RunningServer

TRUST_DOMAIN = "td.example"
IDENTIFIER = "https://tts.td.example"
API_AUDIENCE = "https://api.td.example"
OIDC_CLIENT = "gateway-client"
GATEWAY = "spiffe://td.example/gateway"
ORDERS = "spiffe://td.example/orders"
PAYMENTS = "spiffe://td.example/payments"
BATCH = "spiffe://td.example/batch"
CI = "https://github.com/octo-org/octo-repo"
GITLAB_JOB = "https://gitlab.com/group/project"

ISSUERS = {
    "idp": "https://idp.td.example",
    "oidc": "https://login.td.example",
    "k8s": "https://kubernetes.default.svc",
    "spiffe": "https://spire.td.example",
    "github": "https://token.actions.githubusercontent.com",
    "gitlab": "https://gitlab.com",
}
INTROSPECTION_CLIENT = ("tts", "introspection-secret")


@dataclass
class Platform:
    """The platform issuers' keys, their JWKS server, and the introspection endpoint's known opaque tokens."""

    url: str
    keys: dict[str, SigningKey]
    opaque: dict[str, dict[str, Any]] = field(default_factory=dict)

    def sign(self, issuer: str, claims: dict[str, Any], *, typ: str = "JWT", key: SigningKey | None = None) -> str:
        return encode_jws(claims, key or self.keys[issuer], typ=typ)

    def access_token(
        self, *, sub: str = "alice", scope: str | None = "trade.stocks trade.read", exp_in: int = 300, **changes: Any
    ) -> str:
        """An RFC 9068 JWT access token of the OAuth AS for the gateway's API."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUERS["idp"],
            "sub": sub,
            "aud": API_AUDIENCE,
            "client_id": "web-app",
            "iat": now,
            "exp": now + exp_in,
            "jti": str(uuid.uuid4()),
        }
        if scope is not None:
            claims["scope"] = scope
        key = changes.pop("key", None)
        typ = changes.pop("typ", "at+jwt")
        claims.update(changes)
        return self.sign("idp", {k: v for k, v in claims.items() if v is not None}, typ=typ, key=key)

    def id_token(self, *, sub: str = "bob", exp_in: int = 300, **changes: Any) -> str:
        now = int(time.time())
        claims = {"iss": ISSUERS["oidc"], "sub": sub, "aud": OIDC_CLIENT, "iat": now, "exp": now + exp_in}
        key = changes.pop("key", None)
        claims.update(changes)
        return self.sign("oidc", {k: v for k, v in claims.items() if v is not None}, key=key)

    def k8s_token(self, *, namespace: str = "shop", account: str = "orders", **changes: Any) -> str:
        """A projected service-account token (spec digest §5.3 shape)."""
        now = int(time.time())
        aud = changes.pop("aud", IDENTIFIER)
        claims: dict[str, Any] = {
            "aud": [aud] if isinstance(aud, str) else aud,
            "exp": now + changes.pop("exp_in", 600),
            "iat": now,
            "nbf": now,
            "iss": ISSUERS["k8s"],
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {
                "namespace": namespace,
                "node": {"name": "127.0.0.1", "uid": str(uuid.uuid4())},
                "pod": {"name": f"{account}-69cbfb9798-jv9gn", "uid": str(uuid.uuid4())},
                "serviceaccount": {"name": account, "uid": str(uuid.uuid4())},
                "warnafter": now + 3600,
            },
            "sub": f"system:serviceaccount:{namespace}:{account}",
        }
        key = changes.pop("key", None)
        claims.update(changes)
        return self.sign("k8s", {k: v for k, v in claims.items() if v is not None}, key=key)

    def svid(self, *, spiffe_id: str = BATCH, aud: str | None = IDENTIFIER, exp_in: int = 300, **changes: Any) -> str:
        """A JWT-SVID (spec digest §5.3 shape: sub, aud, exp, iat; no iss)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": None if aud is None else [aud],
            "exp": now + exp_in,
            "iat": now,
            "sub": spiffe_id,
        }
        key = changes.pop("key", None)
        claims.update(changes)
        return self.sign("spiffe", {k: v for k, v in claims.items() if v is not None}, key=key)

    def github_token(self, *, aud: str = IDENTIFIER, ref: str = "refs/heads/main", **changes: Any) -> str:
        """A GitHub Actions OIDC token (spec digest §5.3 shape)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "jti": "example-id",
            "sub": "repo:octo-org/octo-repo:environment:prod",
            "environment": "prod",
            "aud": aud,
            "ref": ref,
            "sha": "example-sha",
            "repository": "octo-org/octo-repo",
            "repository_owner": "octo-org",
            "actor_id": "12",
            "repository_visibility": "private",
            "repository_id": "74",
            "repository_owner_id": "65",
            "run_id": "example-run-id",
            "run_number": "10",
            "run_attempt": "2",
            "runner_environment": "github-hosted",
            "actor": "octocat",
            "workflow": "example-workflow",
            "event_name": "workflow_dispatch",
            "ref_type": "branch",
            "job_workflow_ref": "octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main",
            "iss": ISSUERS["github"],
            "nbf": now,
            "exp": now + changes.pop("exp_in", 300),
            "iat": now,
        }
        key = changes.pop("key", None)
        claims.update(changes)
        return self.sign("github", {k: v for k, v in claims.items() if v is not None}, key=key)

    def gitlab_token(self, *, aud: str = IDENTIFIER, exp_in: int = 300, **changes: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUERS["gitlab"],
            "sub": "project_path:group/project:ref_type:branch:ref:main",
            "aud": aud,
            "namespace_path": "group",
            "project_path": "group/project",
            "ref": "main",
            "ref_type": "branch",
            "pipeline_source": "push",
            "iat": now,
            "nbf": now,
            "exp": now + exp_in,
        }
        key = changes.pop("key", None)
        claims.update(changes)
        return self.sign("gitlab", {k: v for k, v in claims.items() if v is not None}, key=key)


def _platform_app(platform: Platform) -> Starlette:
    async def jwks(request: Request) -> Response:
        return JSONResponse({"keys": [platform.keys[request.path_params["name"]].verification_key.to_jwk()]})

    async def introspect(request: Request) -> Response:
        # RFC 7662 §2.1: the caller must authenticate; §2.2: unknown or inactive tokens answer {"active": false}.
        expected = "Basic " + base64.b64encode(":".join(INTROSPECTION_CLIENT).encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = (await request.body()).decode()
        token = dict(p.split("=", 1) for p in form.split("&")).get("token", "")
        return JSONResponse(platform.opaque.get(token, {"active": False}))

    return Starlette(routes=[Route("/jwks/{name}", jwks), Route("/introspect", introspect, methods=["POST"])])


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    keys = {name: SigningKey.generate("Ed25519" if name == "spiffe" else "ES256") for name in ISSUERS}
    placeholder = Platform("", keys)
    server = RunningServer(_platform_app(placeholder)).start()
    placeholder.url = server.url
    yield placeholder
    server.stop()


@dataclass(frozen=True)
class WorkloadKeys:
    gateway: SigningKey
    rogue: SigningKey


@pytest.fixture(scope="session")
def workload_keys() -> WorkloadKeys:
    return WorkloadKeys(SigningKey.generate(), SigningKey.generate())


def settings_data(platform: Platform, keys: WorkloadKeys, key_dir: Path) -> dict[str, Any]:
    """The test TTS configuration, as the TOML file would hold it."""
    jwks = f"{platform.url}/jwks"
    return {
        "mode": "production",
        "identifier": IDENTIFIER,
        "trust_domains": [TRUST_DOMAIN, "other.example"],
        "keys": {"dir": str(key_dir)},
        "leeway": 5,
        "lifetime": 120,
        "max_lifetime": 300,
        "max_replacements": 3,
        "trusted_proxy": {"addresses": ["127.0.0.1/32"]},
        "issuers": {
            "idp": {
                "kind": "oauth",
                "issuer": ISSUERS["idp"],
                "jwks_uri": f"{jwks}/idp",
                "audiences": [API_AUDIENCE],
                "subject_prefix": "user:",
            },
            "idp-opaque": {
                "kind": "introspection",
                "issuer": ISSUERS["idp"],
                "introspection_endpoint": f"{platform.url}/introspect",
                "client_id": INTROSPECTION_CLIENT[0],
                "client_secret": INTROSPECTION_CLIENT[1],
                "audiences": [API_AUDIENCE],
                "subject_prefix": "user:",
            },
            "oidc": {
                "kind": "oidc",
                "issuer": ISSUERS["oidc"],
                "jwks_uri": f"{jwks}/oidc",
                "audiences": [OIDC_CLIENT],
                "scopes": ["profile.read"],
                "subject_prefix": "oidc:",
            },
            "k8s": {
                "kind": "kubernetes",
                "issuer": ISSUERS["k8s"],
                "jwks_uri": f"{jwks}/k8s",
                "roles": ["client_assertion"],
            },
            "spiffe": {
                "kind": "spiffe",
                "issuer": ISSUERS["spiffe"],
                "jwks_uri": f"{jwks}/spiffe",
                "spiffe_trust_domain": TRUST_DOMAIN,
                "subject_prefix": "workload:",
                "scopes": ["batch.run"],
            },
            "github": {
                "kind": "github_actions",
                "issuer": ISSUERS["github"],
                "jwks_uri": f"{jwks}/github",
                "subject_prefix": "github:",
                "scopes": ["deploy"],
                "allowed_claims": {"repository": ["octo-org/octo-repo"], "ref": ["refs/heads/main"]},
            },
            "gitlab": {
                "kind": "gitlab_ci",
                "issuer": ISSUERS["gitlab"],
                "jwks_uri": f"{jwks}/gitlab",
                "subject_prefix": "gitlab:",
                "scopes": ["deploy"],
            },
        },
        "workloads": [
            {
                "id": GATEWAY,
                "authn": [{"method": "key", "jwks": {"keys": [keys.gateway.verification_key.to_jwk()]}}],
                "audiences": [TRUST_DOMAIN],
                "subject_token_types": ["access_token", "id_token", "self_signed", "unsigned_json", "txn_token"],
                "scopes": ["trade.stocks", "trade.read", "profile.read"],
                "rctx": ["req_ip", "authn"],
                "tctx": ["action", "ticker", "quantity", "note"],
                "asserted_subject_scopes": ["trade.read"],
                "asserted_subject_prefix": "gateway:",
            },
            {
                "id": ORDERS,
                "authn": [
                    {
                        "method": "jwt",
                        "issuer": "k8s",
                        "claims": {"kubernetes.io": {"namespace": "shop", "serviceaccount": {"name": "orders"}}},
                    }
                ],
                "subject_token_types": ["txn_token"],
                "scopes": ["trade.stocks", "trade.read"],
                "tctx": ["order_id"],
            },
            {
                "id": PAYMENTS,
                "authn": [{"method": "mtls"}],
                "subject_token_types": ["txn_token"],
                "scopes": ["trade.stocks", "trade.read"],
                "tctx": ["payment_id"],
                "extend_lifetime": True,
            },
            {
                "id": BATCH,
                "authn": [{"method": "jwt", "issuer": "spiffe", "claims": {"sub": BATCH}}],
                "subject_token_types": ["jwt", "txn_token"],
                "scopes": ["batch.run"],
            },
            {
                "id": CI,
                "authn": [
                    {
                        "method": "jwt",
                        "issuer": "github",
                        "claims": {"repository": "octo-org/octo-repo", "ref": "refs/heads/main"},
                    }
                ],
                "subject_token_types": ["jwt"],
                "scopes": ["deploy"],
            },
            {
                "id": GITLAB_JOB,
                "authn": [{"method": "jwt", "issuer": "gitlab", "claims": {"project_path": "group/project"}}],
                "subject_token_types": ["jwt"],
                "scopes": ["deploy"],
            },
        ],
    }


def assertion(key: SigningKey, workload: str, *, aud: Any = IDENTIFIER, exp_in: int = 60, **changes: Any) -> str:
    """An RFC 7523 client assertion signed with a workload's registered key (iss = sub = the workload id)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": workload,
        "sub": workload,
        "aud": aud,
        "iat": now,
        "exp": now + exp_in,
        "jti": str(uuid.uuid4()),
    }
    typ = changes.pop("typ", "JWT")
    claims.update(changes)
    return encode_jws({k: v for k, v in claims.items() if v is not None}, key, typ=typ)


@dataclass
class Tts:
    """A running TTS: its URL, settings, service object and a verifier that uses its JWKS over HTTP."""

    url: str
    settings: ServiceSettings
    service: TokenService
    platform: Platform
    keys: WorkloadKeys

    @property
    def token_endpoint(self) -> str:
        return f"{self.url}/token"

    def verifier(self, trust_domain: str = TRUST_DOMAIN) -> TxnTokenVerifier:
        source = RemoteJwksKeySource(f"{self.url}/.well-known/jwks.json", allow_http=True, min_refresh_interval=0)
        return TxnTokenVerifier(source, trust_domain=trust_domain, issuer=IDENTIFIER, cache_size=0)

    def gateway_assertion(self, **changes: Any) -> str:
        return assertion(self.keys.gateway, GATEWAY, **changes)

    def form(self, **params: Any) -> dict[str, str]:
        """A valid gateway request (access-token subject) with ``params`` changed; None removes a parameter."""
        base: dict[str, Any] = {
            "grant_type": GRANT_TYPE_TOKEN_EXCHANGE,
            "requested_token_type": TOKEN_TYPE_TXN_TOKEN,
            "audience": TRUST_DOMAIN,
            "scope": "trade.stocks",
            "subject_token_type": TOKEN_TYPE_ACCESS_TOKEN,
            "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
        }
        if "subject_token" not in params:
            base["subject_token"] = self.platform.access_token()
        if "client_assertion" not in params:
            base["client_assertion"] = self.gateway_assertion()
        base.update(params)
        return {k: v for k, v in base.items() if v is not None}

    def issue(self, **params: Any) -> str:
        """A Txn-Token for the gateway (``params`` change the request)."""
        response = self.post(self.form(**params))
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def replace_form(self, txn_token: str, client_assertion: str | None, **params: Any) -> dict[str, str]:
        """A replacement request for ``txn_token`` (scope defaults to the token's)."""
        from txtoken.jws import b64url_decode

        claims = json.loads(b64url_decode(txn_token.split(".")[1]))
        return self.form(
            subject_token=txn_token,
            subject_token_type=TOKEN_TYPE_TXN_TOKEN,
            audience=params.pop("audience", claims["aud"]),
            scope=params.pop("scope", claims["scope"]),
            client_assertion=client_assertion,
            client_assertion_type=CLIENT_ASSERTION_TYPE_JWT_BEARER if client_assertion else None,
            **params,
        )

    def post(self, form: dict[str, str], **kwargs: Any) -> httpx.Response:
        return httpx.post(self.token_endpoint, data=form, **kwargs)

    def client(self, credential: Callable[[], str] | None = None, **kwargs: Any) -> TokenServiceClient:
        return TokenServiceClient(
            self.token_endpoint,
            credential=credential or self.gateway_assertion,
            trust_domain=TRUST_DOMAIN,
            **kwargs,
        )


StartTts = Callable[..., Tts]


def _build(
    platform: Platform, keys: WorkloadKeys, key_dir: Path, change: Callable[[dict[str, Any]], None] | None
) -> tuple[ServiceSettings, TokenService]:
    if not (key_dir / "keys.json").exists():
        KeySet.generate().save(key_dir / "keys.json")
    data = settings_data(platform, keys, key_dir)
    if change is not None:
        change(data)
    settings = load_settings(None, **data)
    return settings, TokenService.build(settings)


@pytest.fixture
def start_tts(
    serve: Callable[..., RunningServer], platform: Platform, workload_keys: WorkloadKeys, tmp_path: Path
) -> StartTts:
    """Start a TTS of its own; ``change(data)`` may edit the configuration first. Keys go in ``tmp_path/keys``."""

    def start(change: Callable[[dict[str, Any]], None] | None = None, key_dir: Path | None = None) -> Tts:
        settings, service = _build(platform, workload_keys, key_dir or tmp_path / "keys", change)
        server = serve(create_app(service), proxy_headers=False)
        return Tts(server.url, settings, service, platform, workload_keys)

    return start


@pytest.fixture(scope="session")
def tts(platform: Platform, workload_keys: WorkloadKeys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tts]:
    """The TTS most tests share (its configuration is never changed)."""
    settings, service = _build(platform, workload_keys, tmp_path_factory.mktemp("tts") / "keys", None)
    server = RunningServer(create_app(service), proxy_headers=False).start()
    yield Tts(server.url, settings, service, platform, workload_keys)
    server.stop()


def carries(token: str, secret: str) -> bool:
    """Whether the decoded claims of ``token`` hold ``secret`` or a dot-separated part of it (§13.4). The base64url
    text of ``token`` is no place to look: a copied value is re-encoded there at another offset."""
    from txtoken.jws import b64url_decode

    payload = b64url_decode(token.split(".")[1]).decode("utf-8")
    return any(part in payload for part in (secret, *secret.split(".")) if len(part) >= 8)


def tamper(token: str, **changes: Any) -> str:
    """``token`` with claims changed and the original signature kept (so the signature no longer verifies)."""
    from txtoken.jws import b64url_decode

    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    claims.update(changes)
    raw = json.dumps(claims, separators=(",", ":")).encode()
    return f"{header}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}.{signature}"
