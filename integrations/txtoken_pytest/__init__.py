"""txtoken's pytest plugin (entry point ``pytest11``): opt-in fixtures of :mod:`txtoken.testing`.

It defines fixtures only: no hooks, options, markers or autouse fixtures, and it imports txtoken when a test asks for
one of its fixtures, not before; a test suite that uses none runs exactly as without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from txtoken.testing import TxnTokenKit
    from txtoken.verify import TxnTokenVerifier

__all__ = ["txtoken_kit", "txtoken_verifier"]


@pytest.fixture
def txtoken_kit() -> TxnTokenKit:
    """A :class:`~txtoken.testing.TxnTokenKit` with new keys: Txn-Tokens, headers, gRPC metadata, a verifier."""
    from txtoken.testing import TxnTokenKit

    return TxnTokenKit()


@pytest.fixture
def txtoken_verifier(txtoken_kit: TxnTokenKit) -> TxnTokenVerifier:
    """The verifier of ``txtoken_kit``'s tokens."""
    return txtoken_kit.verifier
