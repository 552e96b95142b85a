"""Admission of one RPC, shared by the sync and aio servers: verify the caller's WIT and WPT (when configured), read
the token, verify it, authorize the call."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import grpc

from txtoken import telemetry
from txtoken.carrier import carried_token
from txtoken.claims import GRPC_METADATA_KEY
from txtoken.errors import (
    BindingMismatch,
    ConfigurationError,
    TokenMalformed,
    TxTokenError,
    WitRejected,
    WorkloadAuthRejected,
    WptDuplicated,
)
from txtoken.policy import Policy, RouteMatch
from txtoken.verify import TxnTokenVerifier, VerifiedTxnToken
from txtoken.wimse import (
    WIT_METADATA_KEY,
    WPT_METADATA_KEY,
    CallerVerifier,
    VerifiedCaller,
    access_token,
    grpc_audience,
)

__all__ = ["ERROR_METADATA_KEY", "Admission", "BindingExtractor", "Gate", "default_binding_extractor"]

#: Trailing metadata key carrying the stable error code of a refusal.
ERROR_METADATA_KEY = "txtoken-error"

#: Reads the fields that request binding compares from a request message.
BindingExtractor = Callable[[Any], Mapping[str, Any]]

logger = logging.getLogger("txtoken.grpc")


def default_binding_extractor(message: Any) -> Mapping[str, Any]:
    """A mapping as is; a protobuf message by its field names; anything else cannot be bound."""
    if isinstance(message, Mapping):
        return message
    if hasattr(message, "DESCRIPTOR"):
        from google.protobuf.json_format import MessageToDict

        return MessageToDict(message, preserving_proto_field_name=True)
    raise BindingMismatch("the request message cannot be read for binding; configure a binding extractor")


class Admission(NamedTuple):
    """An admitted call: its verified transaction, its authenticated caller (WIMSE) and the policy rule that
    applies, if any."""

    txn: VerifiedTxnToken
    match: RouteMatch | None
    method: str
    caller: VerifiedCaller | None = None

    @property
    def binds_messages(self) -> bool:
        return self.match is not None and bool(self.match.rule.message_bindings)


class Gate:
    """Everything an interceptor decides, free of sync/aio plumbing."""

    def __init__(
        self,
        verifier: TxnTokenVerifier,
        policy: Policy | None,
        binding_extractor: BindingExtractor | None,
        exempt_methods: Iterable[str],
        callers: CallerVerifier | None = None,
        authorities: Iterable[str] = (),
        caller_required: bool = True,
    ) -> None:
        self.verifier = verifier
        self.policy = policy
        self.extract = binding_extractor or default_binding_extractor
        self.exempt = frozenset(exempt_methods)
        self.callers = callers
        self.authorities = tuple(authorities)
        if callers is not None and not self.authorities:
            raise ConfigurationError("checking callers needs this service's authority (the WPT audience)")
        self.caller_required = caller_required

    def admit(self, method: str, metadata: Sequence[Any] | None) -> Admission:
        proof = None if self.callers is None else self._proof(method, metadata)
        caller = None if proof is None or self.callers is None else self.callers.verify(**proof)
        return self._authorize(method, self.verifier.verify(_token(metadata)), caller)

    async def aadmit(self, method: str, metadata: Sequence[Any] | None) -> Admission:
        proof = None if self.callers is None else self._proof(method, metadata)
        caller = None if proof is None or self.callers is None else await self.callers.averify(**proof)
        return self._authorize(method, await self.verifier.averify(_token(metadata)), caller)

    def _proof(self, method: str, metadata: Sequence[Any] | None) -> dict[str, Any] | None:
        """The caller verifier's arguments for this call (None: no WIT or WPT sent, and none required)."""
        values: dict[str, list[str]] = {key: [] for key in (WIT_METADATA_KEY, WPT_METADATA_KEY, GRPC_METADATA_KEY)}
        values["authorization"] = []
        for key, value in metadata or ():
            if key in values:
                values[key].append(_ascii(value))
        wit, wpt = values[WIT_METADATA_KEY], values[WPT_METADATA_KEY]
        if not self.caller_required and not wit and not wpt:
            return None
        if len(wit) > 1:
            raise WitRejected(f"more than one {WIT_METADATA_KEY} metadata entry")
        if len(wpt) > 1:
            raise WptDuplicated(f"more than one {WPT_METADATA_KEY} metadata entry")
        if len(values["authorization"]) > 1:
            raise WorkloadAuthRejected("more than one authorization metadata entry")
        return {
            "wit": next(iter(wit), None),
            "wpt": next(iter(wpt), None),
            "audience": [grpc_audience(authority, method) for authority in self.authorities],
            "txn_token": next(iter(values[GRPC_METADATA_KEY]), None),
            "access_token": access_token(next(iter(values["authorization"]), None)),
        }

    def _authorize(self, method: str, txn: VerifiedTxnToken, caller: VerifiedCaller | None) -> Admission:
        workload = None if caller is None else caller.workload
        match = None if self.policy is None else self.policy.authorize_grpc(txn, method=method, caller=workload)
        return Admission(txn, match, method, caller)

    def check_message(self, admission: Admission, message: Any) -> None:
        if self.policy is None or admission.match is None or not admission.binds_messages:
            return
        try:
            fields = self.extract(message)
        except TxTokenError:
            raise
        except Exception:
            raise BindingMismatch("the binding extractor could not read the request message") from None
        self.policy.authorize_message(admission.txn, admission.match, fields)


def _ascii(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            raise TokenMalformed("the token is not ASCII") from None
    return str(value)


def _token(metadata: Sequence[Any] | None) -> str:
    values = [_ascii(value) for key, value in metadata or () if key == GRPC_METADATA_KEY]
    return carried_token(values, carrier=f"{GRPC_METADATA_KEY} metadata")


def refusal(exc: TxTokenError, method: str) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """Status, details and trailing metadata for a refusal; the details start with the stable code."""
    logger.info(
        "refused a Txn-Token: %s status=%s code=%s",
        method,
        exc.grpc_status,
        exc.code,
        extra={"method": method, "status": exc.grpc_status, "code": exc.code},
    )
    telemetry.refusal("grpc", exc.code)
    return grpc.StatusCode[exc.grpc_status], str(exc), ((ERROR_METADATA_KEY, exc.code),)
