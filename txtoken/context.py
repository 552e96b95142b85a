"""The current transaction: the verified Txn-Token of the request being handled, and (with WIMSE) its caller.

Inbound integrations set both around each request with :func:`use_transaction`; outbound integrations read the
transaction with :func:`current_transaction` or :func:`require_transaction`, handlers the authenticated calling
workload with :func:`current_caller`. Handlers never pass tokens around by hand.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

from txtoken.errors import NoTransaction
from txtoken.verify import VerifiedTxnToken

if TYPE_CHECKING:
    from txtoken.wimse.caller import VerifiedCaller

__all__ = ["current_caller", "current_transaction", "require_transaction", "use_transaction"]

# One variable for both, so that entering and leaving a transaction is one set and one reset.
_State = tuple["VerifiedTxnToken | None", "VerifiedCaller | None"]
_NONE: _State = (None, None)
_state: ContextVar[_State] = ContextVar("txtoken_current_transaction", default=_NONE)


class _Keep:
    """The default of :class:`use_transaction`'s ``caller``: the current caller stays."""


_KEEP = _Keep()


class use_transaction:  # lowercase like contextlib.suppress: callers use it as a function
    """Make ``txn`` the current transaction (and ``caller`` the current caller; by default the caller stays as it
    is, as when a handler switches to a replacement token) inside the ``with`` block; the previous ones are current
    again after it.

    A class rather than a generator-based context manager: it runs around every request and message.
    """

    __slots__ = ("_caller", "_previous", "_reset", "_txn")

    def __init__(self, txn: VerifiedTxnToken | None, caller: VerifiedCaller | None | _Keep = _KEEP) -> None:
        self._txn = txn
        self._caller = caller

    def __enter__(self) -> VerifiedTxnToken | None:
        previous = self._previous = _state.get()
        caller = self._caller
        self._reset = _state.set((self._txn, previous[1] if isinstance(caller, _Keep) else caller))
        return self._txn

    def __exit__(self, *exc_info: object) -> None:
        try:
            _state.reset(self._reset)
        except ValueError:
            # Exited in another Context than entered (a generator finalized elsewhere): restore by value.
            _state.set(self._previous)


def current_transaction() -> VerifiedTxnToken | None:
    """The verified Txn-Token of the current request, or None outside a transaction."""
    return _state.get()[0]


def require_transaction() -> VerifiedTxnToken:
    """The verified Txn-Token of the current request; raises :class:`~txtoken.errors.NoTransaction` outside one."""
    txn = _state.get()[0]
    if txn is None:
        raise NoTransaction("no Txn-Token in the current context")
    return txn


def current_caller() -> VerifiedCaller | None:
    """The authenticated calling workload of the current request (its WIT and WPT verified), or None when the
    service does not check callers or the route did not require one."""
    return _state.get()[1]
