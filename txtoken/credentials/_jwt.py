"""Reading a credential JWT's expiry, without trusting it: only to know when to fetch it again.

The workload never verifies its own credential (it may not even hold the issuer's keys); the TTS does. The payload
is decoded here for ``exp`` alone, so that a credential is never served past it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from txtoken.credentials.base import Credential
from txtoken.errors import CredentialUnavailable, TxTokenError
from txtoken.jws import b64url_decode

__all__ = ["jwt_credential", "unverified_claims", "unverified_expiry"]


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The payload of a compact JWT, read without verifying anything; None if ``token`` is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(b64url_decode(parts[1]))
    except (TxTokenError, ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def unverified_expiry(token: str) -> float | None:
    """The ``exp`` of a compact JWT, read without verifying anything; None if ``token`` is not one or has no ``exp``."""
    payload = unverified_claims(token)
    exp = payload.get("exp") if payload is not None else None
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not float(exp) < float("inf"):
        return None
    return float(exp)


def jwt_credential(token: str, *, origin: str, now: float | None = None) -> Credential:
    """``token`` as a credential expiring at its ``exp``; refused if it is not a JWT with an ``exp``, or expired.

    ``origin`` says where the token came from (a file path, a variable name, an endpoint) for the error message,
    which never contains the token.
    """
    expires_at = unverified_expiry(token)
    if expires_at is None:
        raise CredentialUnavailable(f"{origin} does not hold a JWT with an 'exp' claim")
    at = time.time() if now is None else now
    if expires_at <= at:
        raise CredentialUnavailable(f"{origin} holds a JWT that expired {int(at - expires_at)} s ago")
    return Credential(token, expires_at)
