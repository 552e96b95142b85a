"""End to end: a workload authenticates to a real TTS with each credential source in turn.

The platforms are the test doubles of ``fakes.py`` (a SPIFFE Workload API on a unix socket, the GitHub Actions and
GCP metadata endpoints on loopback) plus a Kubernetes-style token file and GitLab's job variable; their JWKS are
served on loopback and named in the TTS's configuration. Each workload sends its credential as the RFC 7523 client
assertion, through the real TTS client, and presents it again as the subject token of a workload-initiated
transaction (the key-pair workload asserts its subject as unsigned JSON). The Txn-Token it gets must name it in
``req_wl``. The metadata service's identity token is accepted as a subject token (the TTS takes cloud identity tokens
in that role only). A credential from an issuer the TTS does not trust, or for another audience, is refused with
``invalid_client``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from txtoken.claims import TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_JWT, TOKEN_TYPE_UNSIGNED_JSON
from txtoken.client import AsyncTokenServiceClient, TokenServiceClient
from txtoken.credentials import (
    CredentialSource,
    EnvCredentialSource,
    FileCredentialSource,
    GitHubActionsOidcSource,
    GitLabIdTokenSource,
    KeyPairAssertionSource,
    MetadataIdentitySource,
    SpiffeJwtSource,
)
from txtoken.errors import InvalidClient
from txtoken.keys import KeySet, SigningKey
from txtoken.keysource import RemoteJwksKeySource
from txtoken.service import TokenService, create_app, load_settings
from txtoken.verify import TxnTokenVerifier, VerifiedTxnToken

from ..conftest import RunningServer
from .fakes import (
    GCP_IDENTITY_PATH,
    GCP_SUBJECT,
    GITHUB_ISSUER,
    GITHUB_SUBJECT,
    FakeGcpMetadata,
    FakeGitHubOidc,
    FakeWorkloadApi,
    make_jwt,
)

IDENTIFIER = "https://tts.shop.example"
TRUST_DOMAIN = "shop.example"
K8S_ISSUER = "https://kubernetes.default.svc"
GITLAB_ISSUER = "https://gitlab.com"
SPIFFE_TRUST_DOMAIN = "example.org"
EVIL = "https://kubernetes.evil.example"

ORDERS = "spiffe://shop.example/orders"  # Kubernetes projected token in a file
DEV_TOOLS = "spiffe://shop.example/dev-tools"  # Kubernetes token in an environment variable (development)
BATCH = FakeWorkloadApi.spiffe_id  # SPIFFE JWT-SVID
DEPLOYER = "https://github.com/octo-org/octo-repo"  # GitHub Actions
RELEASER = "https://gitlab.com/shop/orders"  # GitLab CI
REPORTS = "spiffe://shop.example/reports"  # a key pair registered with the TTS
CLOUD_REPORTS = "spiffe://shop.example/cloud-reports"  # the cloud instance-metadata identity token


def k8s_token(key: SigningKey, namespace: str, account: str, *, iss: str = K8S_ISSUER, aud: str = IDENTIFIER) -> str:
    """A projected service-account token (spec digest §5.3 shape)."""
    claims = {
        "iss": iss,
        "aud": [aud],
        "sub": f"system:serviceaccount:{namespace}:{account}",
        "nbf": int(time.time()),
        "kubernetes.io": {
            "namespace": namespace,
            "pod": {"name": f"{account}-69cbfb9798-jv9gn", "uid": str(uuid.uuid4())},
            "serviceaccount": {"name": account, "uid": str(uuid.uuid4())},
        },
    }
    return make_jwt(key, claims, lifetime=3600)


def gitlab_token(key: SigningKey, project: str, *, aud: str = IDENTIFIER) -> str:
    namespace = project.split("/")[0]
    claims = {
        "iss": GITLAB_ISSUER,
        "aud": aud,
        "sub": f"project_path:{project}:ref_type:branch:ref:main",
        "namespace_path": namespace,
        "project_path": project,
        "ref": "main",
        "ref_type": "branch",
    }
    return make_jwt(key, claims, lifetime=300)


def k8s_workload(workload: str, account: str) -> dict[str, Any]:
    rule = {"kubernetes.io": {"namespace": "shop", "serviceaccount": {"name": account}}}
    return {
        "id": workload,
        "authn": [{"method": "jwt", "issuer": "k8s", "claims": rule}],
        "subject_token_types": ["jwt"],
        "scopes": ["orders.read"],
    }


@dataclass
class Platform:
    """The issuers' keys, their JWKS server, and the platform endpoints workloads fetch credentials from."""

    keys: dict[str, SigningKey]
    jwks_url: str
    workload_api: FakeWorkloadApi
    github: FakeGitHubOidc
    github_url: str
    gcp: FakeGcpMetadata
    gcp_url: str
    reports_key: SigningKey


def settings_data(platform: Platform, key_dir: Path) -> dict[str, Any]:
    """The TTS configuration: one issuer per platform, one workload per source."""

    def issuer(kind: str, iss: str, name: str, prefix: str, scopes: list[str], **more: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "issuer": iss,
            "jwks_uri": f"{platform.jwks_url}/{name}",
            "subject_prefix": prefix,
            "scopes": scopes,
            **more,
        }

    return {
        "mode": "production",
        "identifier": IDENTIFIER,
        "trust_domains": [TRUST_DOMAIN],
        "keys": {"dir": str(key_dir)},
        "issuers": {
            "k8s": issuer("kubernetes", K8S_ISSUER, "k8s", "k8s:", ["orders.read"]),
            "spiffe": issuer(
                "spiffe",
                "https://spire.example.org",
                "spiffe",
                "spiffe:",
                ["batch.run"],
                spiffe_trust_domain=SPIFFE_TRUST_DOMAIN,
            ),
            "github": issuer(
                "github_actions",
                GITHUB_ISSUER,
                "github",
                "github:",
                ["deploy"],
                allowed_claims={"repository": ["octo-org/octo-repo"]},
            ),
            "gitlab": issuer("gitlab_ci", GITLAB_ISSUER, "gitlab", "gitlab:", ["release"]),
            "gcp": issuer(
                "oidc",
                FakeGcpMetadata.issuer,
                "gcp",
                "gcp:",
                ["reports.run"],
                audiences=[IDENTIFIER],
                roles=["client_assertion", "subject"],
            ),
        },
        "workloads": [
            k8s_workload(ORDERS, "orders"),
            k8s_workload(DEV_TOOLS, "dev-tools"),
            {
                "id": BATCH,
                "authn": [{"method": "jwt", "issuer": "spiffe", "claims": {"sub": BATCH}}],
                "subject_token_types": ["jwt"],
                "scopes": ["batch.run"],
            },
            {
                "id": DEPLOYER,
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
                "id": RELEASER,
                "authn": [{"method": "jwt", "issuer": "gitlab", "claims": {"project_path": "shop/orders"}}],
                "subject_token_types": ["jwt"],
                "scopes": ["release"],
            },
            {
                "id": CLOUD_REPORTS,
                "authn": [{"method": "jwt", "issuer": "gcp", "claims": {"sub": GCP_SUBJECT}}],
                "subject_token_types": ["unsigned_json"],
                "scopes": ["reports.run"],
                "asserted_subject_scopes": ["reports.run"],
                "asserted_subject_prefix": "cloud-reports:",
            },
            {
                "id": REPORTS,
                "authn": [{"method": "key", "jwks": {"keys": [platform.reports_key.verification_key.to_jwk()]}}],
                "subject_token_types": ["unsigned_json", "id_token"],
                "scopes": ["reports.run"],
                "asserted_subject_scopes": ["reports.run"],
                "asserted_subject_prefix": "reports:",
            },
        ],
    }


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    keys = {name: SigningKey.generate() for name in ("k8s", "spiffe", "github", "gitlab", "gcp")}

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse({"keys": [keys[request.path_params["name"]].verification_key.to_jwk()]})

    github = FakeGitHubOidc(keys["github"])
    gcp = FakeGcpMetadata(keys["gcp"])
    servers = [
        RunningServer(app).start() for app in (Starlette(routes=[Route("/jwks/{name}", jwks)]), github.app, gcp.app)
    ]
    workload_api = FakeWorkloadApi(keys["spiffe"]).start()
    try:
        jwks_server, github_server, gcp_server = servers
        yield Platform(
            keys,
            f"{jwks_server.url}/jwks",
            workload_api,
            github,
            github_server.url,
            gcp,
            gcp_server.url + GCP_IDENTITY_PATH,
            SigningKey.generate(),
        )
    finally:
        workload_api.close()
        for server in servers:
            server.stop()


@dataclass
class Tts:
    url: str
    verifier: TxnTokenVerifier

    def client(self, source: CredentialSource) -> TokenServiceClient:
        return TokenServiceClient(f"{self.url}/token", credential=source, trust_domain=TRUST_DOMAIN, retries=0)

    def async_client(self, source: CredentialSource) -> AsyncTokenServiceClient:
        return AsyncTokenServiceClient(f"{self.url}/token", credential=source, trust_domain=TRUST_DOMAIN, retries=0)


@pytest.fixture(scope="module")
def tts(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tts]:
    key_dir = tmp_path_factory.mktemp("tts-keys")
    KeySet.generate().save(key_dir / "keys.json")
    settings = load_settings(None, **settings_data(platform, key_dir))
    server = RunningServer(create_app(TokenService.build(settings))).start()
    jwks = RemoteJwksKeySource(f"{server.url}/.well-known/jwks.json", allow_http=True)
    try:
        yield Tts(server.url, TxnTokenVerifier(jwks, trust_domain=TRUST_DOMAIN, issuer=IDENTIFIER))
    finally:
        server.stop()


@dataclass
class Case:
    """A workload with one credential source, and what its Txn-Token must say."""

    source: CredentialSource
    workload: str
    scope: str
    subject_token_type: str
    expected_sub: str


#: The subject a workload asserts as unsigned JSON; the TTS names it with the workload's asserted_subject_prefix.
ASSERTED = "nightly-report"


def workload_case(name: str, platform: Platform, tmp_path: Path) -> Case:
    keys = platform.keys
    source: CredentialSource
    if name == "file":
        path = tmp_path / "tts-token"
        path.write_text(k8s_token(keys["k8s"], "shop", "orders"))
        return Case(
            FileCredentialSource(path), ORDERS, "orders.read", TOKEN_TYPE_JWT, "k8s:system:serviceaccount:shop:orders"
        )
    if name == "env":
        environ = {"DEV_TOOLS_TOKEN": k8s_token(keys["k8s"], "shop", "dev-tools")}
        source = EnvCredentialSource("DEV_TOOLS_TOKEN", development=True, environ=environ)
        return Case(source, DEV_TOOLS, "orders.read", TOKEN_TYPE_JWT, "k8s:system:serviceaccount:shop:dev-tools")
    if name == "spiffe":
        source = SpiffeJwtSource(IDENTIFIER, socket=platform.workload_api.address, timeout=5)
        return Case(source, BATCH, "batch.run", TOKEN_TYPE_JWT, f"spiffe:{BATCH}")
    if name == "github":
        environ = platform.github.environ(platform.github_url)
        source = GitHubActionsOidcSource(IDENTIFIER, environ=environ, allow_http=True)
        return Case(source, DEPLOYER, "deploy", TOKEN_TYPE_JWT, f"github:{GITHUB_SUBJECT}")
    if name == "gitlab":
        source = GitLabIdTokenSource(
            "TTS_ID_TOKEN", environ={"TTS_ID_TOKEN": gitlab_token(keys["gitlab"], "shop/orders")}
        )
        return Case(
            source, RELEASER, "release", TOKEN_TYPE_JWT, "gitlab:project_path:shop/orders:ref_type:branch:ref:main"
        )
    if name == "metadata":
        source = MetadataIdentitySource(IDENTIFIER, url=platform.gcp_url)
        return Case(source, CLOUD_REPORTS, "reports.run", TOKEN_TYPE_UNSIGNED_JSON, f"cloud-reports:{ASSERTED}")
    assert name == "keypair"
    source = KeyPairAssertionSource(platform.reports_key, workload_id=REPORTS, audience=IDENTIFIER)
    return Case(source, REPORTS, "reports.run", TOKEN_TYPE_UNSIGNED_JSON, f"reports:{ASSERTED}")


@pytest.fixture
def case_for(platform: Platform, tmp_path: Path) -> Iterator[Callable[[str], Case]]:
    """``case_for(name)``: the workload that uses the source ``name``; SPIFFE sources are closed afterwards."""
    made: list[Case] = []

    def make(name: str) -> Case:
        made.append(workload_case(name, platform, tmp_path))
        return made[-1]

    yield make
    for case in made:
        if isinstance(case.source, SpiffeJwtSource):
            case.source.close()


def subject_token(case: Case) -> str:
    """The workload's own credential as the subject; a key-pair workload asserts its subject as unsigned JSON."""
    if case.subject_token_type == TOKEN_TYPE_UNSIGNED_JSON:
        return json.dumps({"sub": ASSERTED})
    return case.source.get().value


SOURCES = ["file", "env", "spiffe", "github", "gitlab", "metadata", "keypair"]


@pytest.mark.parametrize("name", SOURCES)
def test_workload_gets_a_txn_token_naming_it(name: str, tts: Tts, case_for: Callable[[str], Case]) -> None:
    case = case_for(name)
    with tts.client(case.source) as client:
        response = client.exchange(
            subject_token=subject_token(case), subject_token_type=case.subject_token_type, scope=case.scope
        )
    verified: VerifiedTxnToken = tts.verifier.verify(response.access_token)
    assert verified.req_wl == case.workload
    assert verified.sub == case.expected_sub
    assert verified.scopes == {case.scope}


@pytest.mark.anyio
@pytest.mark.parametrize("name", SOURCES)
async def test_async_workload_gets_a_txn_token_naming_it(name: str, tts: Tts, case_for: Callable[[str], Case]) -> None:
    case = case_for(name)
    token = json.dumps({"sub": ASSERTED})
    if case.subject_token_type != TOKEN_TYPE_UNSIGNED_JSON:
        token = (await case.source.aget()).value
    async with tts.async_client(case.source) as client:
        for _ in range(3):  # the cached credential serves several requests
            response = await client.exchange(
                subject_token=token, subject_token_type=case.subject_token_type, scope=case.scope
            )
            assert (await tts.verifier.averify(response.access_token)).req_wl == case.workload


def test_metadata_identity_token_is_accepted_as_the_subject(platform: Platform, tts: Tts) -> None:
    identity = MetadataIdentitySource(IDENTIFIER, url=platform.gcp_url)
    reports = KeyPairAssertionSource(platform.reports_key, workload_id=REPORTS, audience=IDENTIFIER)
    with tts.client(reports) as client:
        response = client.exchange(
            subject_token=identity.get().value, subject_token_type=TOKEN_TYPE_ID_TOKEN, scope="reports.run"
        )
    verified = tts.verifier.verify(response.access_token)
    assert (verified.req_wl, verified.sub) == (REPORTS, "gcp:107517467455664443765")


def test_credential_from_an_untrusted_issuer_is_refused(platform: Platform, tts: Tts, tmp_path: Path) -> None:
    rogue = SigningKey.generate()
    path = tmp_path / "tts-token"
    attempts = {
        "unknown issuer": (k8s_token(rogue, "shop", "orders", iss=EVIL), "no trusted issuer"),
        "trusted issuer name, foreign key": (k8s_token(rogue, "shop", "orders"), "kid_unknown"),
        "another issuer's key": (k8s_token(platform.keys["github"], "shop", "orders"), "kid_unknown"),
        "trusted issuer, no such workload": (k8s_token(platform.keys["k8s"], "shop", "intruder"), "no workload"),
    }
    for what, (token, reason) in attempts.items():
        path.write_text(token)
        with tts.client(FileCredentialSource(path)) as client, pytest.raises(InvalidClient) as info:
            client.exchange(subject_token=token, subject_token_type=TOKEN_TYPE_JWT, scope="orders.read")
        assert info.value.code == "invalid_client"
        assert reason in str(info.value), what
        assert token not in str(info.value)


def test_credential_for_another_audience_is_refused(platform: Platform, tts: Tts, tmp_path: Path) -> None:
    other = "https://tts.elsewhere.example"
    path = tmp_path / "tts-token"
    path.write_text(k8s_token(platform.keys["k8s"], "shop", "orders", aud=other))
    sources: list[CredentialSource] = [
        FileCredentialSource(path),
        SpiffeJwtSource(other, socket=platform.workload_api.address),
        GitHubActionsOidcSource(
            FakeGitHubOidc.default_audience, environ=platform.github.environ(platform.github_url), allow_http=True
        ),
        GitLabIdTokenSource(
            "TTS_ID_TOKEN", environ={"TTS_ID_TOKEN": gitlab_token(platform.keys["gitlab"], "shop/orders", aud=other)}
        ),
        KeyPairAssertionSource(platform.reports_key, workload_id=REPORTS, audience=TRUST_DOMAIN),
    ]
    for source in sources:
        with tts.client(source) as client, pytest.raises(InvalidClient) as info:
            client.exchange(subject_token='{"sub": "x"}', subject_token_type=TOKEN_TYPE_UNSIGNED_JSON, scope="x")
        assert "aud_invalid" in str(info.value), type(source).__name__
        if isinstance(source, SpiffeJwtSource):
            source.close()
    assert platform.workload_api.fetches[other] == 1
    assert platform.github.fetches[FakeGitHubOidc.default_audience] == 1
