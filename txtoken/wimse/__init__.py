"""WIMSE workload-to-workload authentication: who is calling, and a Txn-Token bound to that call.

A calling workload sends its Workload Identity Token (WIT, draft-ietf-wimse-workload-creds) and a fresh Workload
Proof Token (WPT, draft-ietf-wimse-wpt) with every request; the WPT's ``tth`` binds the Txn-Token sent with it. A
receiver verifies the WIT, then the WPT, then the Txn-Token. See ``docs/wimse.md``.
"""

from txtoken.wimse._hash import token_hash
from txtoken.wimse.binding import (
    WIT_HEADER,
    WIT_METADATA_KEY,
    WPT_HEADER,
    WPT_METADATA_KEY,
    access_token,
    grpc_audience,
    http_audiences,
)
from txtoken.wimse.caller import CallerVerifier, VerifiedCaller
from txtoken.wimse.identifier import CallerPattern, check_workload_identifier
from txtoken.wimse.wit import WIT_TYP, VerifiedWit, WitIssuer, WitVerifier, proof_jwk
from txtoken.wimse.wpt import (
    DEFAULT_WPT_LEEWAY,
    DEFAULT_WPT_LIFETIME,
    DEFAULT_WPT_MAX_LIFETIME,
    WPT_TYP,
    VerifiedWpt,
    WptVerifier,
    create_wpt,
    target_uri,
)

__all__ = [
    "DEFAULT_WPT_LEEWAY",
    "DEFAULT_WPT_LIFETIME",
    "DEFAULT_WPT_MAX_LIFETIME",
    "WIT_HEADER",
    "WIT_METADATA_KEY",
    "WIT_TYP",
    "WPT_HEADER",
    "WPT_METADATA_KEY",
    "WPT_TYP",
    "CallerPattern",
    "CallerVerifier",
    "VerifiedCaller",
    "VerifiedWit",
    "VerifiedWpt",
    "access_token",
    "grpc_audience",
    "http_audiences",
    "WitIssuer",
    "WitVerifier",
    "WptVerifier",
    "check_workload_identifier",
    "create_wpt",
    "proof_jwk",
    "target_uri",
    "token_hash",
]
