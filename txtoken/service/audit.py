"""The audit log: one JSON line per issuance and per refusal, on the ``txtoken.audit`` logger.

A line holds the time, outcome, OAuth error and reason (refusals), ``txn``, ``req_wl``, audience, subject token
type, scope, whether it was a replacement, and the SHA-256 of the issued token: never a token, never a secret (§15.2).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AUDIT_LOGGER", "AuditLog", "AuditRecord", "token_digest"]

AUDIT_LOGGER = "txtoken.audit"


def token_digest(token: str) -> str:
    """Hex SHA-256 of a token, to correlate logs with a token without logging it."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


@dataclass(slots=True)
class AuditRecord:
    """What is known about a request so far; filled in as the exchange goes."""

    req_wl: str | None = None
    audience: str | None = None
    subject_token_type: str | None = None
    scope: str | None = None
    txn: str | None = None
    replacement: bool = False


class AuditLog:
    """Writes audit lines to a logger (``txtoken.audit`` unless given)."""

    def __init__(self, logger: logging.Logger | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self._logger = logger or logging.getLogger(AUDIT_LOGGER)
        self._clock = clock

    def _write(self, record: AuditRecord, **fields: object) -> None:
        line = {
            "time": round(self._clock(), 3),
            **fields,
            "txn": record.txn,
            "req_wl": record.req_wl,
            "aud": record.audience,
            "subject_token_type": record.subject_token_type,
            "scope": record.scope,
            "replacement": record.replacement,
        }
        self._logger.info(json.dumps(line, separators=(",", ":")))

    def issued(self, record: AuditRecord, token: str) -> None:
        self._write(record, outcome="issued", token_sha256=token_digest(token))

    def refused(self, record: AuditRecord, error: str, reason: str) -> None:
        self._write(record, outcome="refused", error=error, reason=reason)
