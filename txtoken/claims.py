"""The Txn-Token claim set (draft-ietf-oauth-transaction-tokens §9) and the protocol constants."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError, field_validator

from txtoken.errors import ClaimInvalid, LegacyClaims

__all__ = [
    "CLIENT_ASSERTION_TYPE_JWT_BEARER",
    "GRANT_TYPE_TOKEN_EXCHANGE",
    "GRPC_METADATA_KEY",
    "HTTP_HEADER",
    "LEGACY_CLAIM_NAMES",
    "MAX_JSON_DEPTH",
    "REQUIRED_CLAIMS",
    "TOKEN_TYPE_ACCESS_TOKEN",
    "TOKEN_TYPE_ID_TOKEN",
    "TOKEN_TYPE_JWT",
    "TOKEN_TYPE_REFRESH_TOKEN",
    "TOKEN_TYPE_SELF_SIGNED",
    "TOKEN_TYPE_TXN_TOKEN",
    "TOKEN_TYPE_UNSIGNED_JSON",
    "TXN_TOKEN_TYP",
    "TxnTokenClaims",
    "check_claims",
    "is_numeric_date",
    "map_legacy_claims",
    "nests_deeper",
    "validation_summary",
]

#: JOSE ``typ`` header of a Txn-Token (§9.1); media type ``application/txntoken+jwt``.
TXN_TOKEN_TYP = "txntoken+jwt"
#: The HTTP request header that carries exactly one Txn-Token (§12.1).
HTTP_HEADER = "Txn-Token"
#: The gRPC metadata key (the draft defines no gRPC binding; keys are lowercase ASCII).
GRPC_METADATA_KEY = "txn-token"

GRANT_TYPE_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
CLIENT_ASSERTION_TYPE_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_TYPE_TXN_TOKEN = "urn:ietf:params:oauth:token-type:txn_token"
TOKEN_TYPE_SELF_SIGNED = "urn:ietf:params:oauth:token-type:self_signed"
TOKEN_TYPE_UNSIGNED_JSON = "urn:ietf:params:oauth:token-type:unsigned_json"
TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_TYPE_ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_TYPE_REFRESH_TOKEN = "urn:ietf:params:oauth:token-type:refresh_token"

REQUIRED_CLAIMS = ("iat", "aud", "exp", "txn", "sub", "scope", "req_wl")

#: Claim names of earlier drafts and the current names they map to (§9.2, doc history).
LEGACY_CLAIM_NAMES = {"purp": "scope", "azd": "tctx", "req_ctx": "rctx"}

_LEGACY_NAMES = frozenset(LEGACY_CLAIM_NAMES)

#: How deeply a claim value may nest arrays and objects (``{"a": {"b": 1}}`` is 2). The TTS refuses
#: ``request_details`` and ``request_context`` that nest deeper (``invalid_request``) and :class:`TxnTokenMinter`
#: refuses to sign such claims, so every token txtoken issues stays far below what JSON parsers take: txtoken's own
#: verifier about 200 levels for the whole payload, common parsers such as serde_json 128.
MAX_JSON_DEPTH = 32

NonEmptyStr = Annotated[StrictStr, Field(min_length=1)]
#: RFC 7519 §2: a JSON number, not necessarily an integer; never NaN, infinity or a boolean.
NumericDate = StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)]


def is_numeric_date(value: object) -> bool:
    """Whether ``value`` is a NumericDate (RFC 7519 §2): an ``int`` or a finite ``float``, never a ``bool``."""
    kind = type(value)
    return kind is int or (kind is float and math.isfinite(value))  # type: ignore[arg-type]


def nests_deeper(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON value nests arrays and objects more than ``limit`` levels deep (iterative: any depth)."""
    if not isinstance(value, dict | list):
        return False
    stack = [(value, 1)]  # only objects and arrays: the scalars among the children are skipped as they are met
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


class TxnTokenClaims(BaseModel):
    """The claims of a Txn-Token (§9.2).

    Required: ``iat``, ``aud``, ``exp``, ``txn``, ``sub``, ``scope``, ``req_wl``; recommended ``tctx`` and ``rctx``
    (JSON objects); optional ``iss``. Unknown claims are kept (``model_extra``). Types are strict: NumericDates are
    integers or finite non-integer numbers (RFC 7519 §2); ``aud`` is the one trust domain, a string or an array of
    exactly that one string (RFC 7519 §4.1.3), kept as the string.
    """

    model_config = ConfigDict(frozen=True, extra="allow", strict=True)

    iat: NumericDate
    exp: NumericDate
    aud: NonEmptyStr
    txn: NonEmptyStr
    sub: NonEmptyStr
    scope: NonEmptyStr
    req_wl: NonEmptyStr
    tctx: dict[str, Any] | None = None
    rctx: dict[str, Any] | None = None
    iss: NonEmptyStr | None = None

    @field_validator("aud", mode="before")
    @classmethod
    def _single_audience(cls, value: object) -> object:
        return value[0] if type(value) is list and len(value) == 1 else value

    @property
    def scopes(self) -> frozenset[str]:
        """The space-separated ``scope`` claim as a set."""
        return frozenset(self.scope.split())

    def to_dict(self) -> dict[str, Any]:
        """The claims as a JSON-ready dict, without unset optional claims."""
        return self.model_dump(mode="json", exclude_none=True)


_TIME_CLAIMS = ("iat", "exp")
_STRING_CLAIMS = ("txn", "sub", "scope", "req_wl")


def check_claims(claims: Mapping[str, Any]) -> None:
    """Check parsed JSON claims against the rules of :class:`TxnTokenClaims`, without building the model.

    The verifier's hot path: same rules as the model (a test checks they agree), about a quarter of the cost. Raises
    :class:`~txtoken.errors.ClaimInvalid` naming the claim and the kind of problem, never its value.
    """
    for name in _TIME_CLAIMS:
        value = claims.get(name)
        if type(value) is not int and not is_numeric_date(value):
            raise ClaimInvalid(f"{name}: {'numeric_date_type' if name in claims else 'missing'}")
    aud = claims.get("aud")
    if type(aud) is list:
        if len(aud) != 1:
            raise ClaimInvalid("aud: not a single audience")
        aud = aud[0]
    if type(aud) is not str or not aud:
        raise ClaimInvalid(f"aud: {'missing' if aud is None and 'aud' not in claims else 'string_type'}")
    for name in _STRING_CLAIMS:
        value = claims.get(name)
        if type(value) is not str or not value:
            raise ClaimInvalid(f"{name}: {'missing' if value is None and name not in claims else 'string_type'}")
    for name in ("tctx", "rctx"):
        value = claims.get(name)
        if value is not None and type(value) is not dict:
            raise ClaimInvalid(f"{name}: dict_type")
    iss = claims.get("iss")
    if iss is not None and (type(iss) is not str or not iss):
        raise ClaimInvalid("iss: string_type")


def map_legacy_claims(claims: Mapping[str, Any], *, allow: bool) -> Mapping[str, Any]:
    """Map claim names of older drafts to the current ones, or refuse them.

    Without ``allow`` any legacy name is refused (:class:`LegacyClaims`). With ``allow``, ``purp`` → ``scope``,
    ``azd`` → ``tctx``, ``req_ctx`` → ``rctx``, and ``rctx.req_wl`` → ``req_wl``; a current name wins over a legacy
    one when both are present.
    """
    present = claims.keys() & _LEGACY_NAMES
    if not allow:
        if present:
            raise LegacyClaims(f"claims of an older draft are not accepted: {', '.join(sorted(present))}")
        return claims
    if not present and "req_wl" in claims:
        return claims
    mapped = dict(claims)
    for old, new in LEGACY_CLAIM_NAMES.items():
        if old in mapped:
            value = mapped.pop(old)
            mapped.setdefault(new, value)
    rctx = mapped.get("rctx")
    if "req_wl" not in mapped and isinstance(rctx, dict) and isinstance(rctx.get("req_wl"), str):
        mapped["req_wl"] = rctx["req_wl"]
    return mapped


def validation_summary(exc: ValidationError) -> str:
    """Where each validation error is and its kind, without the offending input (which may be a secret)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['type']}" for e in exc.errors(include_input=False))
