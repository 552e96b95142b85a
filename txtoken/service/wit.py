"""WIT issuance at the token service (``POST /wit``): txtoken's documented protocol, since no standard one exists.

A workload authenticates exactly as for ``/token`` (a client assertion with its platform credential or its
registered key, or mTLS through the trusted proxy) and sends ``proof``, a key proof
(:mod:`txtoken.wimse.proof`) for a key it generated. It gets a WIT whose ``sub`` is its workload id (which must be a
Workload Identifier of the configured trust domain) and whose ``cnf.jwk`` is the proven key, signed with the trust
domain's WIT key: a key set of its own (``keys.json`` in the WIT key directory), separate from the Txn-Token keys and
published at ``/.well-known/wit-jwks.json`` for verifiers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from txtoken.errors import (
    InvalidRequest,
    ReplayStoreUnavailable,
    TokenServiceUnavailable,
    UnauthorizedClient,
    WitSubjectInvalid,
    WorkloadAuthRejected,
)
from txtoken.replay import ReplayStore
from txtoken.service.config import ServiceSettings
from txtoken.service.form import parse_form
from txtoken.service.keystore import KeyStore
from txtoken.service.requester import RequesterAuthenticator
from txtoken.wimse.identifier import check_workload_identifier
from txtoken.wimse.proof import KeyProofVerifier
from txtoken.wimse.wit import WitIssuer

__all__ = ["IssuedWit", "WitIssuance"]

_FIELDS = frozenset({"client_assertion", "client_assertion_type", "client_id", "proof"})


@dataclass(frozen=True, slots=True)
class IssuedWit:
    token: str = field(repr=False)
    workload: str
    expires_in: int


class WitIssuance:
    """Issues WITs to authenticated workloads that prove possession of their key."""

    def __init__(
        self,
        settings: ServiceSettings,
        authenticator: RequesterAuthenticator,
        *,
        replay_store: ReplayStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        config = settings.wimse
        if config is None:
            raise ValueError("WIT issuance needs the [wimse] settings")
        self.keystore = KeyStore(
            config.keys_dir if config.keys_dir is not None else settings.data_dir / "wit",
            create=settings.mode == "development",
            algorithm=settings.algorithm,
            reload_interval=settings.keys.reload_interval,
        )
        self._trust_domain = config.trust_domain
        self._issuer = config.issuer or settings.identifier
        self._lifetime = config.wit_lifetime
        self._authn = authenticator
        self._proofs = KeyProofVerifier(settings.identifier, replay_store=replay_store, clock=clock)
        self._clock = clock

    async def issue(self, body: bytes, headers: Mapping[str, Sequence[str]], peer: str | None) -> IssuedWit:
        """Handle one request; raises a :class:`~txtoken.errors.TokenServiceError` subclass on refusal."""
        form = parse_form(body, _FIELDS, max_fields=16)
        proof = form.pop("proof", None)
        workload = (await self._authn.authenticate(form, headers, peer, self._clock())).workload
        try:
            check_workload_identifier(workload.id, self._trust_domain)
        except WitSubjectInvalid:
            raise UnauthorizedClient("the workload's id is not a Workload Identifier of the trust domain") from None
        if not proof:
            raise InvalidRequest("proof is missing")
        try:
            key = await self._proofs.verify(proof)
        except WorkloadAuthRejected as exc:
            raise InvalidRequest(f"proof: {exc.code}: {exc.message}") from None
        except ReplayStoreUnavailable:
            raise TokenServiceUnavailable("the key proof replay store is unavailable") from None
        issuer = WitIssuer(
            self.keystore.current(),
            trust_domain=self._trust_domain,
            issuer=self._issuer,
            lifetime=self._lifetime,
            clock=self._clock,
        )
        return IssuedWit(issuer.issue(workload.id, key), workload.id, self._lifetime)
