"""The token hash of the WPT's ``wth``, ``ath``, ``tth`` and ``oth`` claims."""

from __future__ import annotations

import base64
import hashlib

__all__ = ["token_hash"]


def token_hash(value: str) -> str:
    """base64url (no padding) of SHA-256 over the ASCII value, exactly as sent (draft-ietf-wimse-wpt §2)."""
    digest = hashlib.sha256(value.encode("ascii", "surrogateescape")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
