"""The Txn-Token Service configuration: a TOML file validated by pydantic, ``TXTOKEN_*`` environment overrides.

A bad file fails at load time with :class:`~txtoken.errors.ConfigurationError` naming the path of each bad field
(``workloads.0.scopes: Input should be a valid list``). ``docs/service.md`` is the reference for every option.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from txtoken.claims import (
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_TOKEN,
    TOKEN_TYPE_JWT,
    TOKEN_TYPE_SELF_SIGNED,
    TOKEN_TYPE_TXN_TOKEN,
    TOKEN_TYPE_UNSIGNED_JSON,
)
from txtoken.errors import ConfigurationError
from txtoken.jws import DEFAULT_MAX_TOKEN_SIZE
from txtoken.keys import ALGORITHMS, Algorithm, load_jwks
from txtoken.verify import DEFAULT_LEEWAY, DEFAULT_MAX_LIFETIME
from txtoken.wimse.identifier import check_trust_domain

__all__ = [
    "WILDCARD",
    "SUBJECT_TOKEN_TYPES",
    "AuthnRule",
    "IssuerConfig",
    "IssuerKind",
    "JwtAuthn",
    "KeyAuthn",
    "KeysConfig",
    "MetricsConfig",
    "MtlsAuthn",
    "ServiceSettings",
    "TrustedProxyConfig",
    "WimseConfig",
    "WorkloadConfig",
    "load_settings",
]

#: Short names accepted in the policy for the subject token types this TTS understands.
SUBJECT_TOKEN_TYPES: dict[str, str] = {
    "access_token": TOKEN_TYPE_ACCESS_TOKEN,
    "id_token": TOKEN_TYPE_ID_TOKEN,
    "jwt": TOKEN_TYPE_JWT,
    "self_signed": TOKEN_TYPE_SELF_SIGNED,
    "unsigned_json": TOKEN_TYPE_UNSIGNED_JSON,
    "txn_token": TOKEN_TYPE_TXN_TOKEN,
}
#: ``["*"]`` as a scope ceiling or rctx/tctx grant admits anything; only accepted in development mode.
WILDCARD = "*"

IssuerKind = Literal["oauth", "oidc", "kubernetes", "spiffe", "github_actions", "gitlab_ci", "introspection"]
Role = Literal["subject", "client_assertion"]
_DEFAULT_ROLES: dict[str, list[Role]] = {
    "oauth": ["subject"],
    "oidc": ["subject"],
    "introspection": ["subject"],
    "kubernetes": ["client_assertion", "subject"],
    "spiffe": ["client_assertion", "subject"],
    "github_actions": ["client_assertion", "subject"],
    "gitlab_ci": ["client_assertion", "subject"],
}
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
#: Subject token types whose ``sub`` the requesting workload asserts (named with its ``asserted_subject_prefix``).
_ASSERTED_SUBJECT_TYPES = frozenset({TOKEN_TYPE_SELF_SIGNED, TOKEN_TYPE_UNSIGNED_JSON})
_SCOPE_TOKEN_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}

ClaimRule = str | int | bool | list[str | int | bool] | dict[str, Any]


def _check_url(value: str | None) -> str | None:
    """Keys and tokens only travel over https (plain http only to loopback, for tests and sidecars)."""
    if value is None:
        return value
    url = urlsplit(value)
    if url.scheme == "https" and url.hostname or url.scheme == "http" and url.hostname in _LOOPBACK_HOSTS:
        return value
    raise ValueError("must be an https URL (http only on loopback)")


def _check_redis_url(value: SecretStr | None) -> SecretStr | None:
    """A Redis URL as redis-py reads it; the message never repeats the URL (it may hold a password)."""
    if value is None:
        return value
    url = urlsplit(value.get_secret_value())
    if url.scheme not in _REDIS_SCHEMES or not (url.hostname if url.scheme != "unix" else url.path):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    return value


def _check_jwks(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and not load_jwks(value):
        raise ValueError("holds no usable signature key")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_scope_tokens(values: list[str]) -> list[str]:
    for value in values:
        if not value or not set(value) <= _SCOPE_TOKEN_CHARS:
            raise ValueError(f"{value!r} is not a scope token (RFC 6749 §3.3)")
    return values


class KeysConfig(_Model):
    """Where the signing keys live: one key set file, ``keys.json``, in a directory all replicas share."""

    dir: Path | None = None
    rotation_overlap: Annotated[int, Field(gt=0)] = 1800
    rotation_prepublish: Annotated[int, Field(ge=0)] = 600
    reload_interval: Annotated[float, Field(gt=0)] = 2.0


class MetricsConfig(_Model):
    """Prometheus text at ``/metrics`` (extra ``prometheus``); ``txtoken serve --metrics`` turns it on."""

    enabled: bool = False


class TrustedProxyConfig(_Model):
    """The proxy that terminates mTLS and forwards the client certificate (Envoy ``x-forwarded-client-cert``)."""

    addresses: list[str] = []
    header: str = "x-forwarded-client-cert"

    @field_validator("addresses")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            ipaddress.ip_network(value, strict=False)
        return values

    @field_validator("header")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class IssuerConfig(_Model):
    """A platform or subject-token issuer the TTS trusts, and the keys (or introspection endpoint) to check it."""

    kind: IssuerKind
    issuer: str = Field(min_length=1)
    roles: list[Role] | None = None
    jwks_uri: str | None = None
    jwks_file: Path | None = None
    jwks: dict[str, Any] | None = None
    algorithms: list[Algorithm] = list(ALGORITHMS)
    audiences: list[str] = []
    subject_prefix: str = ""
    scopes: list[str] | None = None
    allowed_claims: dict[str, ClaimRule] = {}
    spiffe_trust_domain: str | None = None
    introspection_endpoint: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    timeout: Annotated[float, Field(gt=0)] = 5.0
    assertion_max_lifetime: Annotated[int, Field(gt=0)] | None = None

    @field_validator("jwks_uri", "introspection_endpoint")
    @classmethod
    def _urls(cls, v: str | None) -> str | None:
        return _check_url(v)

    @field_validator("jwks")
    @classmethod
    def _jwks(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return _check_jwks(v)

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str] | None) -> list[str] | None:
        return v if v is None else _check_scope_tokens(v)

    @property
    def effective_roles(self) -> list[Role]:
        return self.roles if self.roles is not None else _DEFAULT_ROLES[self.kind]

    @model_validator(mode="after")
    def _keys_or_endpoint(self) -> IssuerConfig:
        sources = [s for s in (self.jwks_uri, self.jwks_file, self.jwks) if s is not None]
        if self.kind == "introspection":
            if self.introspection_endpoint is None:
                raise ValueError("an introspection issuer needs introspection_endpoint")
            if sources:
                raise ValueError("an introspection issuer takes no JWKS")
            if self.effective_roles != ["subject"]:
                raise ValueError("an introspection issuer can only have the 'subject' role")
        elif len(sources) != 1:
            raise ValueError("give exactly one of jwks_uri, jwks_file, jwks")
        if "subject" in self.effective_roles and self.kind in ("oauth", "oidc") and not self.audiences:
            raise ValueError(f"a {self.kind} issuer used for subject tokens needs 'audiences'")
        if self.kind == "spiffe" and not self.spiffe_trust_domain:
            raise ValueError("a spiffe issuer needs spiffe_trust_domain")
        return self


class JwtAuthn(_Model):
    """Authenticated by a platform JWT (client assertion) from ``issuer`` whose claims match ``claims``."""

    method: Literal["jwt"]
    issuer: str
    claims: dict[str, ClaimRule] = Field(min_length=1)


class KeyAuthn(_Model):
    """Authenticated by a client assertion signed with a key pair registered for the workload (``iss = sub = id``)."""

    method: Literal["key"]
    jwks: dict[str, Any] | None = None
    jwks_file: Path | None = None

    @field_validator("jwks")
    @classmethod
    def _jwks(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return _check_jwks(v)

    @model_validator(mode="after")
    def _one_source(self) -> KeyAuthn:
        if (self.jwks is None) == (self.jwks_file is None):
            raise ValueError("give exactly one of jwks, jwks_file")
        return self


class MtlsAuthn(_Model):
    """Authenticated by a client certificate forwarded by the trusted proxy; ``uri`` is its URI SAN (default: id)."""

    method: Literal["mtls"]
    uri: str | None = None


AuthnRule = Annotated[JwtAuthn | KeyAuthn | MtlsAuthn, Field(discriminator="method")]


class WimseConfig(_Model):
    """WIT issuance (``POST /wit``): the trust domain of the Workload Identifiers, the WIT key directory (its own
    ``keys.json``, separate from the Txn-Token keys; default ``<data_dir>/wit``), the WIT lifetime and ``iss``."""

    trust_domain: str = Field(min_length=1)
    keys_dir: Path | None = None
    wit_lifetime: Annotated[int, Field(gt=0, le=86400)] = 3600
    issuer: str | None = None

    @field_validator("trust_domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        try:
            return check_trust_domain(value)
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None


class WorkloadConfig(_Model):
    """One workload that may request Txn-Tokens, how it authenticates, and what it may get (§13.10)."""

    id: str = Field(min_length=1)
    authn: list[AuthnRule] = Field(min_length=1)
    audiences: list[str] | None = None
    subject_token_types: list[str] = Field(min_length=1)
    scopes: list[str] = Field(min_length=1)
    rctx: list[str] = []
    tctx: list[str] = []
    asserted_subject_scopes: list[str] | None = None
    asserted_subject_prefix: str = ""
    lifetime: Annotated[int, Field(gt=0)] | None = None
    extend_lifetime: bool = False

    @field_validator("scopes", "asserted_subject_scopes")
    @classmethod
    def _scopes(cls, v: list[str] | None) -> list[str] | None:
        return v if v is None or v == [WILDCARD] else _check_scope_tokens(v)

    @field_validator("subject_token_types")
    @classmethod
    def _types(cls, values: list[str]) -> list[str]:
        full = []
        for value in values:
            urn = SUBJECT_TOKEN_TYPES.get(value, value)
            if urn not in SUBJECT_TOKEN_TYPES.values():
                raise ValueError(f"unknown subject token type {value!r} (one of {', '.join(SUBJECT_TOKEN_TYPES)})")
            full.append(urn)
        return full


class EnvironmentVariables(EnvSettingsSource):
    """``TXTOKEN_*`` variables; lists are JSON, and ``TXTOKEN_TRUST_DOMAINS`` may also be bare names separated by
    commas (``example.com``)."""

    def prepare_field_value(self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool) -> Any:
        if field_name == "trust_domains" and isinstance(value, str) and not value.lstrip().startswith("["):
            return [name.strip() for name in value.split(",")]
        return super().prepare_field_value(field_name, field, value, value_is_complex)


class _Sources(BaseSettings):
    """Environment variables override the file: ``TXTOKEN_MODE``, ``TXTOKEN_KEYS__DIR``, JSON for lists."""

    model_config = SettingsConfigDict(env_prefix="TXTOKEN_", env_nested_delimiter="__", extra="forbid", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (EnvironmentVariables(settings_cls), init_settings)


class ServiceSettings(_Sources):
    """The whole TTS configuration (one trust-domain policy per file)."""

    mode: Literal["development", "production"] = "production"
    identifier: str = Field(min_length=1)
    trust_domains: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    public_url: str | None = None
    data_dir: Path = Path(".txtoken")
    algorithm: Algorithm = "ES256"
    lifetime: Annotated[int, Field(gt=0)] = DEFAULT_MAX_LIFETIME
    max_lifetime: Annotated[int, Field(gt=0)] = DEFAULT_MAX_LIFETIME
    cap_at_subject_exp: bool = False
    key_assertion_max_lifetime: Annotated[int, Field(gt=0)] = 300
    leeway: Annotated[int, Field(ge=0)] = DEFAULT_LEEWAY
    self_signed_max_age: Annotated[int, Field(gt=0)] = 300
    max_replacements: Annotated[int, Field(ge=0)] = 8
    max_token_size: Annotated[int, Field(gt=512, le=DEFAULT_MAX_TOKEN_SIZE)] = DEFAULT_MAX_TOKEN_SIZE
    max_request_size: Annotated[int, Field(gt=0)] = 65536
    verified_token_cache: Annotated[int, Field(ge=0)] = 10_000  # per issuer; 0 turns the cache off
    replay_redis_url: SecretStr | None = None  # the single-use jti store the replicas share; None: in each process
    keys: KeysConfig = KeysConfig()
    trusted_proxy: TrustedProxyConfig = TrustedProxyConfig()
    metrics: MetricsConfig = MetricsConfig()
    issuers: dict[str, IssuerConfig] = {}
    workloads: list[WorkloadConfig] = []
    wimse: WimseConfig | None = None

    @field_validator("replay_redis_url")
    @classmethod
    def _redis_url(cls, v: SecretStr | None) -> SecretStr | None:
        return _check_redis_url(v)

    @property
    def key_dir(self) -> Path:
        return self.keys.dir if self.keys.dir is not None else self.data_dir

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSettings:
        if self.lifetime > self.max_lifetime:
            raise ValueError("lifetime exceeds max_lifetime")
        if sum(1 for i in self.issuers.values() if i.kind == "introspection") > 1:
            raise ValueError("issuers: at most one introspection issuer")
        seen_ids: set[str] = set()
        mtls_uris: set[str] = set()
        for name, issuer in self.issuers.items():
            if self.mode == "production" and WILDCARD in (issuer.scopes or []):
                # A '*' bound would treat every subject token of this issuer as unconstrained (§13.14).
                raise ValueError(f"issuers.{name}.scopes: '*' is only accepted in development mode")
        self._check_subject_prefixes()
        for i, workload in enumerate(self.workloads):
            where = f"workloads.{i}"
            if workload.id in seen_ids:
                raise ValueError(f"{where}.id: workload {workload.id!r} is listed twice")
            seen_ids.add(workload.id)
            if workload.lifetime is not None and workload.lifetime > self.max_lifetime:
                raise ValueError(f"{where}.lifetime exceeds max_lifetime")
            for domain in workload.audiences or []:
                if domain not in self.trust_domains:
                    raise ValueError(f"{where}.audiences: {domain!r} is not one of trust_domains")
            wildcards = workload.scopes + (workload.asserted_subject_scopes or []) + workload.rctx + workload.tctx
            if self.mode == "production" and WILDCARD in wildcards:
                raise ValueError(f"{where}: '*' is only accepted in development mode")
            if sum(isinstance(rule, KeyAuthn) for rule in workload.authn) > 1:
                raise ValueError(f"{where}.authn: at most one key rule (list every key in its JWKS)")
            for j, rule in enumerate(workload.authn):
                if isinstance(rule, JwtAuthn):
                    trusted = self.issuers.get(rule.issuer)
                    if trusted is None:
                        raise ValueError(f"{where}.authn.{j}.issuer: no issuer named {rule.issuer!r}")
                    if "client_assertion" not in trusted.effective_roles:
                        raise ValueError(f"{where}.authn.{j}.issuer: {rule.issuer!r} lacks the client_assertion role")
                if isinstance(rule, MtlsAuthn):
                    if not self.trusted_proxy.addresses:
                        raise ValueError(f"{where}.authn.{j}: mtls needs trusted_proxy.addresses")
                    uri = rule.uri or workload.id
                    if uri in mtls_uris:
                        raise ValueError(f"{where}.authn.{j}: the certificate URI {uri!r} already names a workload")
                    mtls_uris.add(uri)
        return self

    def _check_subject_prefixes(self) -> None:
        """§9.2: ``sub`` is unique within the trust domain. Each source of subjects (an issuer with the ``subject``
        role, a workload that may assert subjects) names them with its own prefix, and no prefix may begin another:
        then ``prefix + sub`` can only come from one source. An empty prefix is thus only possible for a sole
        source. One issuer configured twice (JWT and introspection) is one source."""
        sources: list[tuple[str, str, str]] = [
            (f"issuers.{name}.subject_prefix", f"issuer {issuer.issuer!r}", issuer.subject_prefix)
            for name, issuer in self.issuers.items()
            if "subject" in issuer.effective_roles
        ]
        sources += [
            (f"workloads.{i}.asserted_subject_prefix", f"workload {w.id!r}", w.asserted_subject_prefix)
            for i, w in enumerate(self.workloads)
            if _ASSERTED_SUBJECT_TYPES.intersection(w.subject_token_types)
        ]
        for j, (where, owner, prefix) in enumerate(sources):
            for other_where, other_owner, other_prefix in sources[:j]:
                same_source = owner == other_owner and prefix == other_prefix
                if not same_source and (prefix.startswith(other_prefix) or other_prefix.startswith(prefix)):
                    raise ValueError(
                        f"{where}: {prefix!r} of {owner} clashes with {other_where} {other_prefix!r} of "
                        f"{other_owner}: sub must be unique within the trust domain (§9.2), so no subject prefix "
                        "may begin another (an empty prefix only for a sole source of subjects)"
                    )


def _describe(exc: ValidationError, source: str) -> str:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-after"))
        problems.append(f"{loc}: {error['msg']}" if loc else error["msg"])
    return f"{source}: " + "; ".join(problems)


def load_settings(path: str | os.PathLike[str] | None = None, **values: Any) -> ServiceSettings:
    """Read the TOML file at ``path`` (if any), merge ``values`` over it, then apply ``TXTOKEN_*`` overrides."""
    data: dict[str, Any] = {}
    source = "configuration"
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigurationError(f"{source}: {exc.strerror or type(exc).__name__}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{source}: not valid TOML: {exc}") from None
    data.update(values)
    try:
        return ServiceSettings(**data)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, source)) from None
    except SettingsError as exc:  # a TXTOKEN_* variable that cannot be decoded
        raise ConfigurationError(f"{source}: {exc}") from None
