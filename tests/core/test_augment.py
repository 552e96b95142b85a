"""Augment: a verified replacement from the TTS is current inside the block, the original again after it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from txtoken import KeySet, TxnTokenMinter, TxnTokenVerifier, VerifiedTxnToken, current_transaction, use_transaction
from txtoken.augment import aaugment, augment
from txtoken.errors import NoTransaction, TxTokenError

KEYS = KeySet.generate()
MINTER = TxnTokenMinter(KEYS, trust_domain="td")
VERIFIER = TxnTokenVerifier(KEYS, trust_domain="td")


@dataclass
class Response:
    access_token: str


class Replacer:
    """Stands in for the TTS: mints a replacement of the presented token (same txn and sub, added tctx)."""

    def __init__(self, *, sub: str | None = None, scope: str | None = None, keys: KeySet = KEYS) -> None:
        self.calls: list[dict[str, Any]] = []
        self.sub, self.scope, self.keys = sub, scope, keys

    def replace(
        self,
        txn_token: str,
        *,
        scope: str | None = None,
        request_details: Mapping[str, Any] | None = None,
        request_context: Mapping[str, Any] | None = None,
    ) -> Response:
        self.calls.append({"token": txn_token, "scope": scope, "details": request_details})
        old = VERIFIER.verify(txn_token)
        minter = TxnTokenMinter(self.keys, trust_domain="td")
        token = minter.mint(
            sub=self.sub or old.sub,
            scope=self.scope or scope or old.claims.scope,
            req_wl="inventory",
            txn=old.txn,
            tctx={**old.tctx, **(request_details or {})},
        )
        return Response(token)


class AsyncReplacer(Replacer):
    async def replace(  # type: ignore[override]
        self,
        txn_token: str,
        *,
        scope: str | None = None,
        request_details: Mapping[str, Any] | None = None,
        request_context: Mapping[str, Any] | None = None,
    ) -> Response:
        return Replacer.replace(self, txn_token, scope=scope, request_details=request_details)


def original() -> VerifiedTxnToken:
    return VERIFIER.verify(MINTER.mint(sub="alice", scope="trade read", req_wl="gateway", tctx={"symbol": "MSFT"}))


def test_replacement_is_current_inside_the_block_only() -> None:
    first, tts = original(), Replacer()
    with use_transaction(first):
        with augment(tts, VERIFIER, scope="trade", request_details={"reserved": 3}) as replacement:
            assert current_transaction() is replacement
            assert replacement.txn == first.txn and replacement.sub == "alice"
            assert dict(replacement.tctx) == {"symbol": "MSFT", "reserved": 3}
            assert replacement.scopes == {"trade"} and replacement.req_wl == "inventory"
        assert current_transaction() is first
    assert tts.calls == [{"token": first.token, "scope": "trade", "details": {"reserved": 3}}]


@pytest.mark.anyio
async def test_async_augment() -> None:
    first = original()
    with use_transaction(first):
        async with aaugment(AsyncReplacer(), VERIFIER, request_details={"reserved": 3}) as replacement:
            assert current_transaction() is replacement and replacement.tctx["reserved"] == 3
        assert current_transaction() is first


@pytest.mark.parametrize(
    ("tts", "error"),
    [
        (Replacer(keys=KeySet.generate()), "kid_unknown"),  # not signed by the trust domain's TTS
        (Replacer(sub="mallory"), "claim_invalid"),  # changed the principal
        (Replacer(scope="trade read admin"), "claim_invalid"),  # widened the scope
    ],
)
def test_a_replacement_that_does_not_hold_up_is_refused_and_the_original_stays(tts: Replacer, error: str) -> None:
    first = original()
    with use_transaction(first):
        with pytest.raises(TxTokenError) as refused, augment(tts, VERIFIER):
            pytest.fail("the block ran with a refused replacement")
        assert refused.value.code == error
        assert current_transaction() is first


def test_augment_outside_a_transaction_raises() -> None:
    with pytest.raises(NoTransaction), augment(Replacer(), VERIFIER):
        pytest.fail("the block ran outside a transaction")
