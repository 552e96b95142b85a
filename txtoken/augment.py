"""Augment the current transaction: a replacement Txn-Token from the TTS, current for the calls inside a block.

::

    with augment(tts_client, verifier, request_details={"reserved": 3}):
        http.post(...)  # carries the replacement token
    # the token as received is current again

The TTS is the only signer: it decides what the replacement carries (draft §13.15: it may add to ``tctx`` and narrow
``scope``, never change ``txn``, ``sub`` or ``aud``, never widen ``scope``). The replacement is verified with this
hop's verifier, and refused unless it keeps ``txn`` and ``sub`` and stays within the current ``scope``, before it
becomes current.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol

from txtoken import telemetry
from txtoken.context import require_transaction, use_transaction
from txtoken.errors import ClaimInvalid
from txtoken.verify import TxnTokenVerifier, VerifiedTxnToken

__all__ = ["AsyncTokenReplacer", "ReplacementResponse", "TokenReplacer", "aaugment", "augment"]


class ReplacementResponse(Protocol):
    @property
    def access_token(self) -> str: ...


class TokenReplacer(Protocol):
    """What :func:`augment` needs of a TTS client (``txtoken.client.TokenServiceClient`` has it)."""

    def replace(
        self,
        txn_token: str,
        *,
        scope: str | None = None,
        request_details: Mapping[str, Any] | None = None,
        request_context: Mapping[str, Any] | None = None,
    ) -> ReplacementResponse: ...


class AsyncTokenReplacer(Protocol):
    """What :func:`aaugment` needs of a TTS client (``txtoken.client.AsyncTokenServiceClient`` has it)."""

    async def replace(
        self,
        txn_token: str,
        *,
        scope: str | None = None,
        request_details: Mapping[str, Any] | None = None,
        request_context: Mapping[str, Any] | None = None,
    ) -> ReplacementResponse: ...


def _accept(current: VerifiedTxnToken, replacement: VerifiedTxnToken) -> VerifiedTxnToken:
    if replacement.txn != current.txn or replacement.sub != current.sub:
        raise ClaimInvalid("the replacement Txn-Token changed txn or sub")
    if not replacement.scopes <= current.scopes:
        raise ClaimInvalid("the replacement Txn-Token widened scope")
    return replacement


@contextmanager
def augment(
    client: TokenReplacer,
    verifier: TxnTokenVerifier,
    *,
    scope: str | None = None,
    request_details: Mapping[str, Any] | None = None,
    request_context: Mapping[str, Any] | None = None,
) -> Iterator[VerifiedTxnToken]:
    """Ask the TTS to replace the current Txn-Token and make the verified replacement current inside the block.

    ``scope`` narrows the scope; ``request_details`` and ``request_context`` are what the TTS turns into added
    ``tctx`` and ``rctx``. Raises :class:`~txtoken.errors.NoTransaction` outside a transaction, the TTS client's
    errors, and :class:`~txtoken.errors.TokenRejected` if the replacement does not verify.
    """
    current = require_transaction()
    with telemetry.operation("replace"):
        response = client.replace(
            current.token, scope=scope, request_details=request_details, request_context=request_context
        )
        replacement = _accept(current, verifier.verify(response.access_token))
    with use_transaction(replacement):
        yield replacement


@asynccontextmanager
async def aaugment(
    client: AsyncTokenReplacer,
    verifier: TxnTokenVerifier,
    *,
    scope: str | None = None,
    request_details: Mapping[str, Any] | None = None,
    request_context: Mapping[str, Any] | None = None,
) -> AsyncIterator[VerifiedTxnToken]:
    """:func:`augment` for async code: ``async with aaugment(async_tts_client, verifier, ...)``."""
    current = require_transaction()
    with telemetry.operation("replace"):
        response = await client.replace(
            current.token, scope=scope, request_details=request_details, request_context=request_context
        )
        replacement = _accept(current, await verifier.averify(response.access_token))
    with use_transaction(replacement):
        yield replacement
