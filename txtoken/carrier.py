"""The one Txn-Token a request carries, read from every value of its carrier (HTTP header field, gRPC metadata key).

Each integration collects the values of the ``Txn-Token`` header (:data:`~txtoken.claims.HTTP_HEADER`) or the
``txn-token`` metadata key (:data:`~txtoken.claims.GRPC_METADATA_KEY`) and hands them to :func:`carried_token`, so
every carrier follows the same rules.
"""

from __future__ import annotations

from collections.abc import Sequence

from txtoken.errors import TokenDuplicated, TokenMissing

__all__ = ["carried_token"]


def carried_token(values: Sequence[str], *, carrier: str) -> str:
    """The one Txn-Token in ``values``, all the values of the carrier named ``carrier`` (§12.1: exactly one).

    - No value, or only empty ones: :class:`~txtoken.errors.TokenMissing`.
    - More than one: :class:`~txtoken.errors.TokenDuplicated`, whether as separate field lines or metadata entries,
      or joined into one value with commas (RFC 9110 §5.3), as fetch/undici sends a header set twice. A compact JWS
      never contains a comma, so a comma always separates values.

    What remains is not checked here: the verifier refuses anything that is not one well-formed token.
    """
    if len(values) == 1 and "," not in values[0]:  # the usual case, decided without splitting
        value = values[0].strip(" \t")
        if value:
            return value
    members = [member.strip(" \t") for value in values for member in value.split(",")]
    if not any(members):
        raise TokenMissing(f"no {carrier}" if not members else f"the {carrier} is empty")
    if len(members) > 1:
        raise TokenDuplicated(f"more than one {carrier} value")
    return members[0]
