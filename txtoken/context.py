"""The current transaction: one ContextVar holding the verified Txn-Token of the request being handled.

Inbound integrations set it around each request with :func:`use_transaction`; outbound integrations read it with
:func:`current_transaction` or :func:`require_transaction`. Handlers never pass tokens around by hand.
"""

from __future__ import annotations

from contextvars import ContextVar

from txtoken.errors import NoTransaction
from txtoken.verify import VerifiedTxnToken

__all__ = ["current_transaction", "require_transaction", "use_transaction"]

_current: ContextVar[VerifiedTxnToken | None] = ContextVar("txtoken_current_transaction", default=None)


class use_transaction:  # lowercase like contextlib.suppress: callers use it as a function
    """Make ``txn`` the current transaction inside the ``with`` block; the previous one is current again after it.

    A class rather than a generator-based context manager: it runs around every request and message.
    """

    __slots__ = ("_previous", "_reset", "_txn")

    def __init__(self, txn: VerifiedTxnToken | None) -> None:
        self._txn = txn

    def __enter__(self) -> VerifiedTxnToken | None:
        self._previous = _current.get()
        self._reset = _current.set(self._txn)
        return self._txn

    def __exit__(self, *exc_info: object) -> None:
        try:
            _current.reset(self._reset)
        except ValueError:
            # Exited in another Context than entered (a generator finalized elsewhere): restore by value.
            _current.set(self._previous)


def current_transaction() -> VerifiedTxnToken | None:
    """The verified Txn-Token of the current request, or None outside a transaction."""
    return _current.get()


def require_transaction() -> VerifiedTxnToken:
    """The verified Txn-Token of the current request; raises :class:`~txtoken.errors.NoTransaction` outside one."""
    txn = _current.get()
    if txn is None:
        raise NoTransaction("no Txn-Token in the current context")
    return txn
