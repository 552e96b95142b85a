"""The issuance policy: which workloads may request Txn-Tokens, how each authenticates, and what each may get.

Per workload (§13.10): the trust domains it may request tokens for, the subject token types it may present, the
scope ceiling, the ``rctx`` and ``tctx`` members it may assert, and the token lifetime. Everything not granted is
refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from txtoken.errors import InvalidScope, UnauthorizedClient
from txtoken.keys import load_jwks
from txtoken.keysource import JwksFileKeySource, KeySource, StaticKeySource
from txtoken.service.config import WILDCARD, JwtAuthn, KeyAuthn, MtlsAuthn, ServiceSettings, WorkloadConfig

__all__ = ["Policy", "Workload", "parse_scope", "token_scopes"]

_SCOPE_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}


def parse_scope(value: str) -> list[str]:
    """The scope tokens of a ``scope`` parameter (RFC 6749 §3.3), duplicates dropped, order kept; a malformed one is
    ``invalid_scope`` (RFC 6749 §5.2)."""
    tokens = value.split(" ")
    if not value or any(not t or not set(t) <= _SCOPE_CHARS for t in tokens):
        raise InvalidScope("scope is not a space-delimited list of scope tokens")
    return list(dict.fromkeys(tokens))


def token_scopes(scope: str) -> frozenset[str]:
    """The scope a subject token itself carries. A ``*`` in it is not the policy's wildcard and is left out, so that a
    token can never stand for every scope (§13.6); it could only have matched a request for the literal scope ``*``,
    which no workload may make outside development mode."""
    return frozenset(scope.split()) - {WILDCARD}


def _bound(values: list[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


@dataclass(frozen=True, slots=True)
class Workload:
    """One workload's grants; ``*`` in a list means anything (development mode only)."""

    id: str
    audiences: frozenset[str]
    subject_token_types: frozenset[str]
    scopes: frozenset[str]
    rctx: frozenset[str]
    tctx: frozenset[str]
    asserted_subject_scopes: frozenset[str] | None
    asserted_subject_prefix: str
    lifetime: int
    extend_lifetime: bool
    keys: KeySource | None = field(default=None, repr=False)

    def check_audience(self, audience: str) -> None:
        if audience not in self.audiences:
            raise UnauthorizedClient("this workload may not request tokens for this audience")

    def check_subject_type(self, token_type: str) -> None:
        if token_type not in self.subject_token_types:
            raise UnauthorizedClient("this workload may not present this subject_token_type")

    def check_scope(self, requested: list[str], subject_scopes: frozenset[str] | None) -> None:
        """Requested scope within both the subject token's scope (§13.6, §13.14) and this workload's ceiling."""
        if subject_scopes is None:
            raise InvalidScope("the subject token's scope cannot be determined and the policy gives no bound")
        if WILDCARD not in subject_scopes and not subject_scopes.issuperset(requested):
            raise InvalidScope("requested scope exceeds the subject token's scope")
        if WILDCARD not in self.scopes and not self.scopes.issuperset(requested):
            raise InvalidScope("requested scope exceeds what this workload may request")

    def check_context(self, name: str, members: Mapping[str, Any], allowed: frozenset[str]) -> None:
        if WILDCARD in allowed:
            return
        refused = sorted(set(members) - allowed)
        if refused:
            # Member names come from the request, so they are listed only as a count, never echoed.
            raise UnauthorizedClient(f"{name}: {len(refused)} member(s) this workload may not assert")


def _workload_keys(config: WorkloadConfig) -> KeySource | None:
    for rule in config.authn:
        if isinstance(rule, KeyAuthn):
            if rule.jwks_file is not None:
                return JwksFileKeySource(rule.jwks_file)
            return StaticKeySource(load_jwks(rule.jwks or {}))
    return None


class Policy:
    """All workloads of the configuration, indexed by how they authenticate."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.workloads: dict[str, Workload] = {}
        self.by_jwt: list[tuple[str, Mapping[str, Any], Workload]] = []
        self.by_mtls_uri: dict[str, Workload] = {}
        for config in settings.workloads:
            workload = Workload(
                id=config.id,
                audiences=frozenset(config.audiences if config.audiences is not None else settings.trust_domains),
                subject_token_types=frozenset(config.subject_token_types),
                scopes=frozenset(config.scopes),
                rctx=frozenset(config.rctx),
                tctx=frozenset(config.tctx),
                asserted_subject_scopes=_bound(config.asserted_subject_scopes),
                asserted_subject_prefix=config.asserted_subject_prefix,
                lifetime=config.lifetime or settings.lifetime,
                extend_lifetime=config.extend_lifetime,
                keys=_workload_keys(config),
            )
            self.workloads[workload.id] = workload
            for rule in config.authn:
                if isinstance(rule, JwtAuthn):
                    self.by_jwt.append((rule.issuer, rule.claims, workload))
                elif isinstance(rule, MtlsAuthn):
                    self.by_mtls_uri.setdefault(rule.uri or workload.id, workload)

    def keyed_workload(self, workload_id: str) -> Workload | None:
        """The workload with this id if it has a registered key pair."""
        workload = self.workloads.get(workload_id)
        return workload if workload is not None and workload.keys is not None else None
