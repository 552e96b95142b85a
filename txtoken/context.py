"""The current transaction: one ContextVar holding the verified Txn-Token of the request being handled.

Inbound integrations set it around each request with :func:`use_transaction`; outbound integrations read it with
:func:`current_transaction` or :func:`require_transaction`. Handlers never pass tokens around by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from txtoken.errors import NoTransaction
from txtoken.verify import VerifiedTxnToken

__all__ = ["current_transaction", "require_transaction", "use_transaction"]

_current: ContextVar[VerifiedTxnToken | None] = ContextVar("txtoken_current_transaction", default=None)


@contextmanager
def use_transaction(txn: VerifiedTxnToken | None) -> Iterator[VerifiedTxnToken | None]:
    """Make ``txn`` the current transaction inside the block; the previous one is current again afterwards."""
    previous = _current.get()
    reset = _current.set(txn)
    try:
        yield txn
    finally:
        try:
            _current.reset(reset)
        except ValueError:
            # Exited in another Context than entered (a generator finalized elsewhere): restore by value.
            _current.set(previous)


def current_transaction() -> VerifiedTxnToken | None:
    """The verified Txn-Token of the current request, or None outside a transaction."""
    return _current.get()


def require_transaction() -> VerifiedTxnToken:
    """The verified Txn-Token of the current request; raises :class:`~txtoken.errors.NoTransaction` outside one."""
    txn = _current.get()
    if txn is None:
        raise NoTransaction("no Txn-Token in the current context")
    return txn
