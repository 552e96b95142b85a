"""The token endpoint's logic: the RFC 8693 profile of §11 (request checks, policy, subject, claims, signing).

Checks run in this order, so that each failure gets the §1.7 error of its kind: form syntax (``invalid_request``),
requester authentication (``invalid_client``), ``grant_type`` (``unsupported_grant_type``), the other parameters
(``invalid_request``), ``audience`` (``invalid_target``), what the policy grants the workload
(``unauthorized_client``), the subject token (``invalid_request``), the scope (``invalid_scope``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from txtoken import telemetry
from txtoken.claims import (
    GRANT_TYPE_TOKEN_EXCHANGE,
    MAX_JSON_DEPTH,
    TOKEN_TYPE_TXN_TOKEN,
    TxnTokenClaims,
    check_claims,
    nests_deeper,
)
from txtoken.errors import (
    ClaimInvalid,
    InvalidRequest,
    InvalidTarget,
    KeysUnavailable,
    TokenRejected,
    TokenServiceError,
    TokenServiceUnavailable,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from txtoken.mint import TxnTokenMinter
from txtoken.service.audit import AuditLog, AuditRecord
from txtoken.service.config import SUBJECT_TOKEN_TYPES, ServiceSettings
from txtoken.service.form import parse_form
from txtoken.service.keystore import KeyStore
from txtoken.service.policy import Workload, parse_scope
from txtoken.service.requester import RequesterAuthenticator
from txtoken.service.subjects import Subject, SubjectProfiles, SubjectRequest, strict_json_object

__all__ = ["CHAIN_CLAIM", "FORM_PARAMETERS", "IssuedToken", "TokenExchange"]

#: The claim that keeps the call chain of requesting workloads on replacement (§13.15): the ``req_wl`` of every
#: earlier token of the transaction, oldest first; the current requester is ``req_wl``. Absent on a first issuance.
CHAIN_CLAIM = "req_wl_chain"
_KNOWN_TYPES = frozenset(SUBJECT_TOKEN_TYPES.values())
_SHORT_TYPES = {urn: name for name, urn in SUBJECT_TOKEN_TYPES.items()}


#: The parameters of a Txn-Token request this TTS understands; others are ignored (RFC 6749 §3.2).
FORM_PARAMETERS = frozenset(
    {
        "grant_type",
        "requested_token_type",
        "audience",
        "scope",
        "subject_token",
        "subject_token_type",
        "request_context",
        "request_details",
        "client_assertion",
        "client_assertion_type",
        "client_id",
        "resource",
        "actor_token",
        "actor_token_type",
    }
)
_MAX_FIELDS = 64
_NOT_IN_PROFILE = ("resource", "actor_token", "actor_token_type")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A signed Txn-Token and what the response says about it."""

    token: str = field(repr=False)
    expires_in: int
    scope: str
    scope_changed: bool


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise InvalidRequest(f"{name} is missing")
    return value


def _context(form: Mapping[str, str], name: str) -> dict[str, Any]:
    text = form.get(name)
    value = {} if text is None else strict_json_object(text, name)
    if nests_deeper(value):
        raise InvalidRequest(f"{name} nests deeper than {MAX_JSON_DEPTH} levels")
    return value


def _carries(value: Any, secret: str) -> bool:
    """Whether a string anywhere in a parsed JSON value (member names included) contains ``secret``."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if secret in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _annotate(outcome: telemetry.Outcome, record: AuditRecord) -> None:
    if record.req_wl is not None:
        outcome.annotate("requester", record.req_wl)
    if record.subject_token_type is not None:
        outcome.annotate("subject_token_type", _SHORT_TYPES.get(record.subject_token_type, "unsupported"))
    outcome.annotate("replacement", record.replacement)


class TokenExchange:
    """Turns a token request into a Txn-Token or a refusal, and writes the audit line either way."""

    def __init__(
        self,
        settings: ServiceSettings,
        authenticator: RequesterAuthenticator,
        profiles: SubjectProfiles,
        keystore: KeyStore,
        audit: AuditLog,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._authn = authenticator
        self._profiles = profiles
        self._keystore = keystore
        self._audit = audit
        self._clock = clock

    async def exchange(self, body: bytes, headers: Mapping[str, Sequence[str]], peer: str | None) -> IssuedToken:
        """Handle one request; raises a :class:`TokenServiceError` subclass on refusal."""
        record = AuditRecord()
        with telemetry.operation("issue") as outcome:
            try:
                issued = await self._exchange(body, headers, peer, record)
            except TokenServiceError as exc:
                self._audit.refused(record, exc)
                raise
            finally:
                _annotate(outcome, record)
            self._audit.issued(record, issued.token)
            return issued

    async def _exchange(
        self, body: bytes, headers: Mapping[str, Sequence[str]], peer: str | None, record: AuditRecord
    ) -> IssuedToken:
        now = self._clock()
        form = parse_form(body, FORM_PARAMETERS, max_fields=_MAX_FIELDS)
        workload = (await self._authn.authenticate(form, headers, peer, now)).workload
        record.req_wl = workload.id

        grant_type = _required(form, "grant_type")
        if grant_type != GRANT_TYPE_TOKEN_EXCHANGE:
            raise UnsupportedGrantType("grant_type must be token-exchange")
        for name in _NOT_IN_PROFILE:
            if name in form:
                raise InvalidRequest(f"{name} is not part of the Txn-Token profile")
        if _required(form, "requested_token_type") != TOKEN_TYPE_TXN_TOKEN:
            raise InvalidRequest("requested_token_type must be txn_token")
        audience = _required(form, "audience")
        if audience not in self._settings.trust_domains:
            raise InvalidTarget("audience is not a trust domain this service serves")
        record.audience = audience
        requested = parse_scope(_required(form, "scope"))
        record.scope = " ".join(requested)
        token_type = _required(form, "subject_token_type")
        record.subject_token_type = token_type if token_type in _KNOWN_TYPES else "unsupported"
        subject_token = _required(form, "subject_token")
        rctx_in, tctx_in = _context(form, "request_context"), _context(form, "request_details")
        for name, members in (("request_context", rctx_in), ("request_details", tctx_in)):
            if _carries(members, subject_token):
                raise InvalidRequest(f"{name} carries the subject token, which a Txn-Token must not contain (§13.4)")

        profile = self._profiles.select(token_type, subject_token)
        workload.check_audience(audience)
        workload.check_subject_type(token_type)
        subject = await self._validate(profile.validate, SubjectRequest(subject_token, workload, audience, now))
        record.replacement = subject.replaced is not None
        if subject.replaced is not None:
            record.txn = subject.replaced.txn  # an existing transaction: worth naming even when refused below
        workload.check_scope(requested, subject.scopes)

        claims = self._claims(workload, subject, audience, requested, rctx_in, tctx_in, int(now))
        minter = TxnTokenMinter(
            self._keystore.current(),
            trust_domain=audience,
            issuer=self._settings.identifier,
            lifetime=self._settings.lifetime,
            max_lifetime=self._settings.max_lifetime,
        )
        token = minter.sign(claims)
        if len(token) >= self._settings.max_token_size:
            raise InvalidRequest(
                f"the Txn-Token would be {len(token)} bytes, over the budget of {self._settings.max_token_size}: "
                "send less request_context or request_details"
            )
        record.txn = claims["txn"]
        scope = " ".join(requested)
        return IssuedToken(token, int(claims["exp"] - claims["iat"]), scope, scope != form["scope"])

    @staticmethod
    async def _validate(validate: Callable[[SubjectRequest], Awaitable[Subject]], request: SubjectRequest) -> Subject:
        try:
            subject = await validate(request)
        except TokenRejected as exc:
            raise InvalidRequest(f"subject_token: {exc.code}") from None
        except KeysUnavailable:
            raise TokenServiceUnavailable("the subject token issuer's keys are unavailable") from None
        return subject

    def _claims(
        self,
        workload: Workload,
        subject: Subject,
        audience: str,
        requested: list[str],
        rctx_in: dict[str, Any],
        tctx_in: dict[str, Any],
        iat: int,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "iat": iat,
            "aud": audience,
            "sub": subject.sub,
            "scope": " ".join(requested),
            "req_wl": workload.id,
            "iss": self._settings.identifier,
        }
        old = subject.replaced
        if old is None:
            workload.check_context("request_context", rctx_in, workload.rctx)
            workload.check_context("request_details", tctx_in, workload.tctx)
            rctx, tctx = rctx_in, tctx_in
            data["txn"] = str(uuid.uuid4())
            data["exp"] = iat + workload.lifetime
            if self._settings.cap_at_subject_exp and subject.expires_at is not None:
                # §6: a Txn-Token need not outlive the subject token it was issued for.
                data["exp"] = min(data["exp"], int(subject.expires_at))
                if data["exp"] <= iat:
                    raise InvalidRequest("subject_token expires within a second")
        else:
            rctx = self._merge(workload, "request_context", dict(old.rctx), rctx_in, workload.rctx)
            tctx = self._merge(workload, "request_details", dict(old.tctx), tctx_in, workload.tctx)
            data["txn"] = old.txn
            data["exp"] = iat + workload.lifetime
            if not workload.extend_lifetime:
                data["exp"] = min(data["exp"], old.expires_at)
            data[CHAIN_CLAIM] = self._chain(old.claims)
        if rctx:
            data["rctx"] = rctx
        if tctx:
            data["tctx"] = tctx
        try:
            check_claims(data)  # the rules of TxnTokenClaims, without building the model
        except ClaimInvalid as exc:
            raise InvalidRequest(f"the Txn-Token claims are invalid: {exc.message}") from None
        return data

    @staticmethod
    def _merge(
        workload: Workload, name: str, old: dict[str, Any], new: dict[str, Any], allowed: frozenset[str]
    ) -> dict[str, Any]:
        """Existing members are immutable (§13.15); new members only as far as the policy grants them."""
        for key, value in new.items():
            if key in old and _canonical(old[key]) != _canonical(value):
                raise UnauthorizedClient(f"{name} would change a member of the token being replaced")
        added = {key: value for key, value in new.items() if key not in old}
        workload.check_context(name, added, allowed)
        return {**old, **added}

    def _chain(self, old: TxnTokenClaims) -> list[str]:
        previous = (old.model_extra or {}).get(CHAIN_CLAIM, [])
        if not isinstance(previous, list) or not all(isinstance(w, str) for w in previous):
            raise InvalidRequest(f"subject_token: {CHAIN_CLAIM} is malformed")
        chain = [*previous, old.req_wl]
        if len(chain) > self._settings.max_replacements:
            raise InvalidRequest(
                f"this would be replacement {len(chain)} of the transaction; "
                f"the cap is {self._settings.max_replacements}"
            )
        return chain
