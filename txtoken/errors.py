"""One exception tree for txtoken.

Every error has a stable machine ``code``, the HTTP status and gRPC status name an integration answers with, and,
where it applies, the OAuth 2.0 error name (RFC 6749 §5.2) the Txn-Token Service answers with. Messages never
contain a token.

::

    TxTokenError                          500  INTERNAL
    ├── ConfigurationError                500  INTERNAL
    ├── TokenRejected                     401  UNAUTHENTICATED   invalid_request
    │   ├── TokenMissing, TokenDuplicated, TokenTooLarge, TokenMalformed
    │   ├── AlgorithmNotAllowed, TypMismatch, UnknownKey, SignatureInvalid
    │   ├── AudienceMismatch, TokenExpired, TokenNotYetValid, LifetimeTooLong
    │   └── ClaimInvalid, LegacyClaims, TokenReplayed
    ├── WorkloadAuthRejected              400  UNAUTHENTICATED   (WIMSE: a caller's WIT or WPT is missing or not valid)
    │   ├── WitRejected: WitMissing, WitExpired, WitSubjectInvalid, WitKeyInvalid
    │   └── WptRejected: WptMissing, WptDuplicated, WptTypMismatch, WptAlgMismatch, WptSignatureInvalid,
    │       WptAudienceMismatch, WptExpired, WptLifetimeTooLong, WptReplayed, WptWitHashMismatch,
    │       WptTxnTokenHashMismatch, WptAccessTokenHashMismatch, WptOtherTokenInvalid
    ├── AccessDenied                      403  PERMISSION_DENIED
    │   ├── InsufficientScope
    │   ├── BindingMismatch
    │   └── CallerNotAllowed              (WIMSE: the authenticated caller may not use this route)
    ├── NoTransaction                     401  UNAUTHENTICATED   (no current Txn-Token where one is needed)
    ├── KeysUnavailable                   503  UNAVAILABLE
    ├── CredentialUnavailable             503  UNAVAILABLE
    ├── ReplayStoreUnavailable            503  UNAVAILABLE       (a single-use check cannot be made)
    ├── TokenServiceError                 the TTS's OAuth error, see ``oauth_error_class``
    │   ├── InvalidRequest, InvalidClient, InvalidScope, InvalidTarget
    │   ├── UnauthorizedClient, UnsupportedGrantType
    │   └── TokenServiceUnavailable       503  UNAVAILABLE
    ├── AccessTokenInvalid                401  UNAUTHENTICATED   (the gateway: external access token, RFC 6750)
    └── RequestTooLarge                   413  INVALID_ARGUMENT  (the gateway: body larger than it reads)
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccessDenied",
    "AccessTokenInvalid",
    "AlgorithmNotAllowed",
    "AudienceMismatch",
    "BindingMismatch",
    "CallerNotAllowed",
    "ClaimInvalid",
    "ConfigurationError",
    "CredentialUnavailable",
    "InsufficientScope",
    "InvalidClient",
    "InvalidRequest",
    "InvalidScope",
    "InvalidTarget",
    "KeysUnavailable",
    "LegacyClaims",
    "LifetimeTooLong",
    "NoTransaction",
    "ReplayStoreUnavailable",
    "RequestTooLarge",
    "SignatureInvalid",
    "TokenDuplicated",
    "TokenExpired",
    "TokenMalformed",
    "TokenMissing",
    "TokenNotYetValid",
    "TokenReplayed",
    "TokenRejected",
    "TokenServiceError",
    "TokenServiceUnavailable",
    "TokenTooLarge",
    "TxTokenError",
    "TypMismatch",
    "UnauthorizedClient",
    "UnknownKey",
    "UnsupportedGrantType",
    "WitExpired",
    "WitKeyInvalid",
    "WitMissing",
    "WitRejected",
    "WitSubjectInvalid",
    "WorkloadAuthRejected",
    "WptAccessTokenHashMismatch",
    "WptAlgMismatch",
    "WptAudienceMismatch",
    "WptDuplicated",
    "WptExpired",
    "WptLifetimeTooLong",
    "WptMissing",
    "WptOtherTokenInvalid",
    "WptRejected",
    "WptReplayed",
    "WptSignatureInvalid",
    "WptTxnTokenHashMismatch",
    "WptTypMismatch",
    "WptWitHashMismatch",
    "oauth_error_class",
]


class TxTokenError(Exception):
    """Root of every txtoken error."""

    code: ClassVar[str] = "txtoken_error"
    http_status: ClassVar[int] = 500
    grpc_status: ClassVar[str] = "INTERNAL"
    oauth_error: ClassVar[str | None] = None

    def __init__(self, message: str = "") -> None:
        self.message = message or self.code.replace("_", " ")
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ConfigurationError(TxTokenError):
    """txtoken was configured in a way that cannot work (bad key, bad option)."""

    code = "configuration_error"


# --- the presented token is not acceptable (401 / UNAUTHENTICATED) -------------------------------------------------


class TokenRejected(TxTokenError):
    """The presented Txn-Token is missing or not valid."""

    code = "token_invalid"
    http_status = 401
    grpc_status = "UNAUTHENTICATED"
    oauth_error = "invalid_request"


class TokenMissing(TokenRejected):
    code = "token_missing"


class TokenDuplicated(TokenRejected):
    """More than one Txn-Token was presented (§12.1: exactly one)."""

    code = "token_duplicated"


class TokenTooLarge(TokenRejected):
    code = "token_too_large"


class TokenMalformed(TokenRejected):
    """Not a compact JWS, bad base64url or JSON, duplicate JSON members, or a bad header."""

    code = "token_malformed"


class AlgorithmNotAllowed(TokenRejected):
    code = "alg_not_allowed"


class TypMismatch(TokenRejected):
    code = "typ_invalid"


class UnknownKey(TokenRejected):
    code = "kid_unknown"


class SignatureInvalid(TokenRejected):
    code = "signature_invalid"


class AudienceMismatch(TokenRejected):
    code = "aud_invalid"


class TokenExpired(TokenRejected):
    code = "token_expired"


class TokenNotYetValid(TokenRejected):
    code = "token_not_yet_valid"


class LifetimeTooLong(TokenRejected):
    code = "lifetime_too_long"


class ClaimInvalid(TokenRejected):
    """A required claim is missing or a claim has the wrong type."""

    code = "claim_invalid"


class TokenReplayed(TokenRejected):
    """A Txn-Token presented a second time where each may be used once (a forward-auth ``single_use`` route)."""

    code = "token_replayed"


class LegacyClaims(TokenRejected):
    """Claim names of an older draft, refused unless the compatibility switch is on."""

    code = "legacy_claims"


# --- WIMSE: the calling workload's WIT or WPT is not acceptable (400 / UNAUTHENTICATED) ------------------------------
# draft-ietf-wimse-workload-creds §5.2: WIT/WPT failures answer 400 with problem details; 401 is NOT RECOMMENDED.


class WorkloadAuthRejected(TxTokenError):
    """The calling workload's Workload Identity Token or Workload Proof Token is missing or not valid."""

    code = "workload_auth_invalid"
    http_status = 400
    grpc_status = "UNAUTHENTICATED"


class WitRejected(WorkloadAuthRejected):
    """The Workload Identity Token is malformed, of the wrong ``typ``, or not signed by a trust anchor."""

    code = "wit_invalid"


class WitMissing(WitRejected):
    code = "wit_missing"


class WitExpired(WitRejected):
    code = "wit_expired"


class WitSubjectInvalid(WitRejected):
    """``sub`` is not a Workload Identifier of the configured trust domain."""

    code = "wit_sub_invalid"


class WitKeyInvalid(WitRejected):
    """``cnf.jwk`` is missing, private, of a disallowed algorithm, or not a usable key."""

    code = "wit_cnf_invalid"


class WptRejected(WorkloadAuthRejected):
    """The Workload Proof Token is malformed or a claim is missing or of the wrong type."""

    code = "wpt_invalid"


class WptMissing(WptRejected):
    code = "wpt_missing"


class WptDuplicated(WptRejected):
    code = "wpt_duplicated"


class WptTypMismatch(WptRejected):
    code = "wpt_typ_invalid"


class WptAlgMismatch(WptRejected):
    """The WPT's ``alg`` is not the WIT's ``cnf.jwk.alg``."""

    code = "wpt_alg_mismatch"


class WptSignatureInvalid(WptRejected):
    code = "wpt_signature_invalid"


class WptAudienceMismatch(WptRejected):
    code = "wpt_aud_invalid"


class WptExpired(WptRejected):
    code = "wpt_expired"


class WptLifetimeTooLong(WptRejected):
    code = "wpt_lifetime_too_long"


class WptReplayed(WptRejected):
    """The WPT's ``jti`` was already used within its lifetime."""

    code = "wpt_replayed"


class WptWitHashMismatch(WptRejected):
    code = "wpt_wth_mismatch"


class WptTxnTokenHashMismatch(WptRejected):
    """``tth`` is missing while a Txn-Token is sent, or does not match it (or is present without one)."""

    code = "wpt_tth_mismatch"


class WptAccessTokenHashMismatch(WptRejected):
    code = "wpt_ath_mismatch"


class WptOtherTokenInvalid(WptRejected):
    """An ``oth`` entry is unknown to this receiver or does not match its header."""

    code = "wpt_oth_invalid"


# --- the token is valid but this hop refuses it (403 / PERMISSION_DENIED) --------------------------------------------


class AccessDenied(TxTokenError):
    code = "access_denied"
    http_status = 403
    grpc_status = "PERMISSION_DENIED"
    oauth_error = "unauthorized_client"


class InsufficientScope(AccessDenied):
    code = "insufficient_scope"


class BindingMismatch(AccessDenied):
    """A value of the request differs from the value the Txn-Token carries."""

    code = "binding_mismatch"


class CallerNotAllowed(AccessDenied):
    """The calling workload (its WIT ``sub``) is not one the route's policy allows."""

    code = "caller_not_allowed"


class NoTransaction(TxTokenError):
    """Code that needs the current Txn-Token ran outside a transaction.

    Raised while serving a request (a handler on a path exempt from verification), it means the request established
    no transaction: 401, as for a missing token.
    """

    code = "no_transaction"
    http_status = 401
    grpc_status = "UNAUTHENTICATED"


# --- something txtoken depends on is down (503 / UNAVAILABLE) ---------------------------------------------------------


class KeysUnavailable(TxTokenError):
    code = "keys_unavailable"
    http_status = 503
    grpc_status = "UNAVAILABLE"
    oauth_error = "temporarily_unavailable"


class CredentialUnavailable(TxTokenError):
    """The workload's own credential cannot be had (missing variable, file, socket, endpoint)."""

    code = "credential_unavailable"
    http_status = 503
    grpc_status = "UNAVAILABLE"


class ReplayStoreUnavailable(TxTokenError):
    """A single-use identifier cannot be checked (the replay store is full or unreachable): refused, never waved on."""

    code = "replay_store_unavailable"
    http_status = 503
    grpc_status = "UNAVAILABLE"
    oauth_error = "temporarily_unavailable"


# --- errors of the Txn-Token Service, by OAuth error code ---------------------------------------------------------


class TokenServiceError(TxTokenError):
    """The TTS refused a request; ``code`` is its OAuth error code."""

    code = "token_service_error"
    http_status = 400
    grpc_status = "FAILED_PRECONDITION"
    oauth_error = "invalid_request"


class InvalidRequest(TokenServiceError):
    code = "invalid_request"
    oauth_error = "invalid_request"


class InvalidClient(TokenServiceError):
    code = "invalid_client"
    http_status = 401
    grpc_status = "UNAUTHENTICATED"
    oauth_error = "invalid_client"


class InvalidScope(TokenServiceError):
    code = "invalid_scope"
    grpc_status = "PERMISSION_DENIED"
    oauth_error = "invalid_scope"


class InvalidTarget(TokenServiceError):
    code = "invalid_target"
    oauth_error = "invalid_target"


class UnauthorizedClient(TokenServiceError):
    code = "unauthorized_client"
    grpc_status = "PERMISSION_DENIED"
    oauth_error = "unauthorized_client"


class UnsupportedGrantType(TokenServiceError):
    code = "unsupported_grant_type"
    oauth_error = "unsupported_grant_type"


class TokenServiceUnavailable(TokenServiceError):
    code = "temporarily_unavailable"
    http_status = 503
    grpc_status = "UNAVAILABLE"
    oauth_error = "temporarily_unavailable"


_OAUTH_ERRORS: dict[str, type[TokenServiceError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest,
        InvalidClient,
        InvalidScope,
        InvalidTarget,
        UnauthorizedClient,
        UnsupportedGrantType,
        TokenServiceUnavailable,
    )
}


def oauth_error_class(error: str) -> type[TokenServiceError]:
    """The error class for an OAuth ``error`` code returned by a TTS (``TokenServiceError`` if unknown)."""
    return _OAUTH_ERRORS.get(error, TokenServiceError)


# --- the inbound gateway's own refusals of external requests ---------------------------------------------------------


class AccessTokenInvalid(TxTokenError):
    """The external access token is missing, malformed, expired, revoked or from an untrusted issuer (RFC 6750
    ``invalid_token``)."""

    code = "invalid_token"
    http_status = 401
    grpc_status = "UNAUTHENTICATED"


class RequestTooLarge(TxTokenError):
    """The request body is larger than the gateway reads to build ``request_details``."""

    code = "request_too_large"
    http_status = 413
    grpc_status = "INVALID_ARGUMENT"
