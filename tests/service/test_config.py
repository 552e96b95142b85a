"""The configuration: TOML validated by pydantic, errors naming the bad field, TXTOKEN_* overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from txtoken.claims import TOKEN_TYPE_ACCESS_TOKEN
from txtoken.errors import ConfigurationError
from txtoken.service import load_settings

EXAMPLE = """
mode = "production"
identifier = "https://tts.example.com"
trust_domains = ["example.com"]
lifetime = 60

[keys]
dir = "/run/secrets/txtoken"

[trusted_proxy]
addresses = ["10.0.0.5", "10.1.0.0/16"]

[issuers.corp]
kind = "oauth"
issuer = "https://idp.example.com"
jwks_uri = "https://idp.example.com/jwks"
audiences = ["https://api.example.com"]

[issuers.k8s]
kind = "kubernetes"
issuer = "https://kubernetes.default.svc"
jwks_file = "/etc/k8s/jwks.json"
roles = ["client_assertion"]

[[workloads]]
id = "spiffe://example.com/ns/edge/sa/gateway"
subject_token_types = ["access_token"]
scopes = ["trade.stocks"]
rctx = ["req_ip"]
tctx = ["action"]

[[workloads.authn]]
method = "jwt"
issuer = "k8s"
claims = { sub = "system:serviceaccount:edge:gateway" }

[[workloads.authn]]
method = "mtls"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tts.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_configuration_loads(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, EXAMPLE))
    assert settings.key_dir == Path("/run/secrets/txtoken")
    workload = settings.workloads[0]
    assert workload.subject_token_types == [TOKEN_TYPE_ACCESS_TOKEN]
    assert [rule.method for rule in workload.authn] == ["jwt", "mtls"]
    assert settings.issuers["k8s"].effective_roles == ["client_assertion"]


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TXTOKEN_LIFETIME", "30")
    monkeypatch.setenv("TXTOKEN_KEYS__DIR", "/srv/keys")
    monkeypatch.setenv("TXTOKEN_TRUST_DOMAINS", '["example.com", "example.org"]')
    monkeypatch.setenv("TXTOKEN_UNRELATED_SETTING", "ignored")
    settings = load_settings(_write(tmp_path, EXAMPLE))
    assert settings.lifetime == 30
    assert settings.key_dir == Path("/srv/keys")
    assert settings.trust_domains == ["example.com", "example.org"]


@pytest.mark.parametrize(
    "change, where",
    [
        (('scopes = ["trade.stocks"]', 'scopes = "trade.stocks"'), "workloads.0.scopes"),
        (('method = "mtls"', 'method = "password"'), "workloads.0.authn.1"),
        (('issuer = "k8s"', 'issuer = "nope"'), "workloads.0.authn.0.issuer"),
        (("lifetime = 60", "lifetime = 900"), "lifetime exceeds max_lifetime"),
        (('kind = "oauth"', 'kind = "saml"'), "issuers.corp.kind"),
        (('addresses = ["10.0.0.5", "10.1.0.0/16"]', 'addresses = ["not-an-ip"]'), "trusted_proxy.addresses"),
        (
            ('subject_token_types = ["access_token"]', 'subject_token_types = ["refresh_token"]'),
            "workloads.0.subject_token_types",
        ),
        (('scopes = ["trade.stocks"]', 'scopes = ["*"]'), "only accepted in development mode"),
        (("lifetime = 60", "lifetime = 60\nsurprise = 1"), "surprise"),
        (('jwks_file = "/etc/k8s/jwks.json"', ""), "issuers.k8s"),
    ],
)
def test_bad_field_is_named(tmp_path: Path, change: tuple[str, str], where: str) -> None:
    path = _write(tmp_path, EXAMPLE.replace(*change, 1))
    with pytest.raises(ConfigurationError) as caught:
        load_settings(path)
    assert str(path) in str(caught.value)
    assert where in str(caught.value)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_settings(_write(tmp_path, "mode = "))
    with pytest.raises(ConfigurationError, match="missing.toml"):
        load_settings(tmp_path / "missing.toml")


def test_secrets_are_masked(tmp_path: Path) -> None:
    text = EXAMPLE + (
        '\n[issuers.opaque]\nkind = "introspection"\nissuer = "https://idp.example.com"\n'
        'introspection_endpoint = "https://idp.example.com/introspect"\nclient_id = "tts"\n'
        'client_secret = "s3cr3t-value"\n'
    )
    settings = load_settings(_write(tmp_path, text))
    assert "s3cr3t-value" not in repr(settings)
    secret = settings.issuers["opaque"].client_secret
    assert secret is not None and secret.get_secret_value() == "s3cr3t-value"


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "service.md").read_text(encoding="utf-8")
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    settings = load_settings(_write(tmp_path, example))
    assert [w.id for w in settings.workloads][0] == "spiffe://example.com/ns/edge/sa/gateway"
    assert settings.issuers["github"].allowed_claims == {"repository": ["acme/app"], "ref": ["refs/heads/main"]}


@pytest.mark.parametrize(
    "change, where",
    [
        (
            ('jwks_uri = "https://idp.example.com/jwks"', 'jwks_uri = "http://idp.example.com/jwks"'),
            "issuers.corp.jwks_uri: Value error, must be an https URL",
        ),
        (('jwks_uri = "https://idp.example.com/jwks"', "jwks = { keys = [] }"), "issuers.corp.jwks: Value error"),
        (('method = "mtls"', 'method = "mtls"\n[[workloads.authn]]\nmethod = "mtls"'), "already names a workload"),
    ],
    ids=["plain http to a remote host", "JWKS without keys", "one certificate URI for two rules"],
)
def test_unsafe_or_ambiguous_settings_are_refused(tmp_path: Path, change: tuple[str, str], where: str) -> None:
    with pytest.raises(ConfigurationError, match=where):
        load_settings(_write(tmp_path, EXAMPLE.replace(*change, 1)))
