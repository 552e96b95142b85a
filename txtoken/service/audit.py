"""The audit log: one structured record per issuance and per refusal, on the ``txtoken.audit`` logger.

The record's fields (``extra=``, so a JSON formatter such as :class:`txtoken.logs.JsonFormatter` writes them as
members; the message repeats them as ``name=value`` for plain text) are the outcome, the OAuth error, HTTP status
and reason (refusals), ``txn``, ``req_wl``, ``aud``, ``subject_token_type``, ``scope``, ``replacement``, and the
SHA-256 of the issued token (``token_sha256``): never a token, never a secret (§15.2).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii

from txtoken.errors import TokenServiceError

__all__ = ["AUDIT_LOGGER", "AuditLog", "AuditRecord", "token_digest"]

AUDIT_LOGGER = "txtoken.audit"


def token_digest(token: str) -> str:
    """Hex SHA-256 of a token, to correlate logs with a token without logging it."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def _json(value: object) -> str:
    """``json.dumps`` of an audit field's value (a string, an integer or a boolean) at a third of its cost: an audit
    line is written for every token."""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return encode_basestring_ascii(value)  # what json.dumps writes for a string
    return json.dumps(value)


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
    """Writes audit records to a logger (``txtoken.audit`` unless given)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(AUDIT_LOGGER)

    def _write(self, record: AuditRecord, summary: str, **fields: object) -> None:
        extra = {
            **fields,
            "txn": record.txn,
            "req_wl": record.req_wl,
            "aud": record.audience,
            "subject_token_type": record.subject_token_type,
            "scope": record.scope,
            "replacement": record.replacement,
        }
        details = " ".join(f"{name}={_json(value)}" for name, value in extra.items() if value is not None)
        self._logger.info("%s: %s", summary, details, extra=extra)

    def issued(self, record: AuditRecord, token: str) -> None:
        self._write(record, "Txn-Token issued", outcome="issued", token_sha256=token_digest(token))

    def refused(self, record: AuditRecord, exc: TokenServiceError) -> None:
        error = exc.oauth_error or exc.code
        self._write(
            record,
            "Txn-Token request refused",
            outcome="refused",
            error=error,
            status=exc.http_status,
            reason=exc.message,
        )
