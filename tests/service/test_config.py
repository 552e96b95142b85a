"""The configuration: TOML validated by pydantic, errors naming the bad field, TXTOKEN_* overrides."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from txtoken.claims import TOKEN_TYPE_ACCESS_TOKEN
from txtoken.errors import ConfigurationError
from txtoken.keys import SigningKey
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


# --- issue 10: sub unique within the trust domain (§9.2) -----------------------------------------------------------

_JWKS = {"keys": [SigningKey.generate().verification_key.to_jwk()]}


def _issuer(iss: str, prefix: str, kind: str = "oauth") -> dict[str, Any]:
    return {"kind": kind, "issuer": iss, "jwks": _JWKS, "audiences": ["api"], "subject_prefix": prefix}


def _asserting(workload_id: str, prefix: str) -> dict[str, Any]:
    return {
        "id": workload_id,
        "authn": [{"method": "key", "jwks": _JWKS}],
        "subject_token_types": ["self_signed"],
        "scopes": ["read"],
        "asserted_subject_prefix": prefix,
    }


def _subject_sources(issuers: dict[str, Any], workloads: list[dict[str, Any]] | None = None) -> Any:
    return load_settings(
        None,
        identifier="https://tts.example.com",
        trust_domains=["example.com"],
        issuers=issuers,
        workloads=workloads or [],
    )


def test_an_empty_prefix_beside_another_is_refused_naming_both_issuers() -> None:
    """issue 10: an access token with sub=oidc:bob from an issuer without prefix and an ID token with sub=bob from an
    issuer with prefix oidc: both became oidc:bob. Such a configuration is refused at load time."""
    issuers = {
        "corp": _issuer("https://idp.example.com", ""),
        "login": _issuer("https://login.example.com", "oidc:", kind="oidc"),
    }
    with pytest.raises(ConfigurationError) as caught:
        _subject_sources(issuers)
    message = str(caught.value)
    assert "issuers.login.subject_prefix" in message and "issuers.corp.subject_prefix" in message
    assert "https://idp.example.com" in message and "https://login.example.com" in message


@pytest.mark.parametrize(
    "prefixes",
    [("user:", "user:"), ("user:", "user:admin:"), ("a", "ab")],
    ids=["equal", "one begins the other", "without a separator"],
)
def test_prefixes_of_distinct_issuers_must_be_prefix_free(prefixes: tuple[str, str]) -> None:
    issuers = {"a": _issuer("https://a.example", prefixes[0]), "b": _issuer("https://b.example", prefixes[1])}
    with pytest.raises(ConfigurationError, match=r"issuers\.b\.subject_prefix.*issuers\.a\.subject_prefix"):
        _subject_sources(issuers)


def test_asserted_subject_prefixes_count_as_sources_of_subjects() -> None:
    """A workload that asserts subjects (self_signed, unsigned_json) names them with its own prefix, which must not
    clash with an issuer's or with another asserting workload's."""
    corp = {"corp": _issuer("https://idp.example.com", "user:")}
    with pytest.raises(ConfigurationError, match=r"workloads\.0\.asserted_subject_prefix.*issuers\.corp"):
        _subject_sources(corp, [_asserting("spiffe://example.com/gateway", "")])
    with pytest.raises(ConfigurationError, match=r"workloads\.1\.asserted_subject_prefix.*workloads\.0"):
        _subject_sources(corp, [_asserting("spiffe://example.com/a", "a:"), _asserting("spiffe://example.com/b", "a:")])
    settings = _subject_sources(
        corp, [_asserting("spiffe://example.com/a", "a:"), _asserting("spiffe://example.com/b", "b:")]
    )
    assert [w.asserted_subject_prefix for w in settings.workloads] == ["a:", "b:"]


def test_prefix_free_configurations_load() -> None:
    """A sole source may use the empty prefix; one issuer configured twice (JWT and introspection) is one source
    and keeps one prefix; a workload that asserts no subjects has no namespace to clash."""
    assert _subject_sources({"corp": _issuer("https://idp.example.com", "")}).issuers["corp"].subject_prefix == ""
    opaque = {
        "kind": "introspection",
        "issuer": "https://idp.example.com",
        "introspection_endpoint": "https://idp.example.com/introspect",
        "subject_prefix": "user:",
    }
    both = {"corp": _issuer("https://idp.example.com", "user:"), "opaque": opaque}
    assert set(_subject_sources(both).issuers) == {"corp", "opaque"}
    with pytest.raises(ConfigurationError, match="issuers.opaque.subject_prefix"):
        _subject_sources({**both, "opaque": {**opaque, "subject_prefix": ""}})
    relaying = {**_asserting("spiffe://example.com/orders", ""), "subject_token_types": ["txn_token"]}
    assert _subject_sources(both, [relaying]).workloads[0].id == "spiffe://example.com/orders"


# --- issue 10: TXTOKEN_* variables ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("example.com", ["example.com"]),
        ("example.com, example.org", ["example.com", "example.org"]),
        ('["example.com"]', ["example.com"]),
    ],
)
def test_trust_domains_variable_may_be_bare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    """issue 10: TXTOKEN_TRUST_DOMAINS=example.com crashed with a raw SettingsError; a bare value is accepted."""
    monkeypatch.setenv("TXTOKEN_TRUST_DOMAINS", value)
    assert load_settings(_write(tmp_path, EXAMPLE)).trust_domains == expected


@pytest.mark.parametrize(
    "name, value",
    [("TXTOKEN_ISSUERS", "not json"), ("TXTOKEN_TRUST_DOMAINS", "[unclosed"), ("TXTOKEN_TRUST_DOMAINS", "a,,b")],
)
def test_undecodable_variable_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match="trust_domains|issuers"):
        load_settings(_write(tmp_path, EXAMPLE))


def test_serve_turns_a_settings_error_into_one_line(tmp_path: Path) -> None:
    """issue 10: ``txtoken serve`` printed a raw SettingsError traceback for an undecodable TXTOKEN_* variable."""
    env = {**os.environ, "TXTOKEN_ISSUERS": "not json"}
    result = subprocess.run(
        [sys.executable, "-m", "txtoken", "serve", "--config", str(_write(tmp_path, EXAMPLE))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("txtoken serve: configuration_error: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


# --- replay_redis_url: the single-use jti store the replicas share ----------------------------------------------------

_REDIS_URL = "redis://:r3dis-pw@redis.txtoken.svc:6379/0"


def test_replay_redis_url_from_the_file_or_the_environment_and_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(_write(tmp_path, EXAMPLE)).replay_redis_url is None  # default: each process its own
    settings = load_settings(_write(tmp_path, f'replay_redis_url = "{_REDIS_URL}"\n' + EXAMPLE))
    assert settings.replay_redis_url is not None
    assert settings.replay_redis_url.get_secret_value() == _REDIS_URL
    assert "r3dis-pw" not in repr(settings)
    monkeypatch.setenv("TXTOKEN_REPLAY_REDIS_URL", "rediss://redis.example:6380/1")
    overridden = load_settings(_write(tmp_path, f'replay_redis_url = "{_REDIS_URL}"\n' + EXAMPLE)).replay_redis_url
    assert overridden is not None and overridden.get_secret_value() == "rediss://redis.example:6380/1"


@pytest.mark.parametrize("url", ["http://:r3dis-pw@redis.example:6379", "redis://:r3dis-pw@", "r3dis-pw"])
def test_a_replay_redis_url_that_is_not_one_is_refused_without_repeating_it(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigurationError, match="replay_redis_url: Value error, must be a redis://") as caught:
        load_settings(_write(tmp_path, f'replay_redis_url = "{url}"\n' + EXAMPLE))
    assert "r3dis-pw" not in str(caught.value)
