"""The verified transaction as a Starlette user, so ``request.user`` and ``@requires("scope")`` work."""

from __future__ import annotations

from starlette.authentication import AuthCredentials, BaseUser

from txtoken.verify import VerifiedTxnToken

__all__ = ["TxnCredentials", "TxnUser"]


class TxnUser(BaseUser):
    """The transaction's principal (``sub``), with the verified token at ``.txn``."""

    def __init__(self, txn: VerifiedTxnToken) -> None:
        self.txn = txn

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.txn.sub

    @property
    def identity(self) -> str:
        return self.txn.sub

    def __repr__(self) -> str:
        return f"TxnUser(sub={self.txn.sub!r}, txn={self.txn.txn!r})"


class TxnCredentials(AuthCredentials):
    """Starlette credentials holding the token's scopes, sorted; the list is built on first read (most handlers
    never read it, and the middleware makes one per request)."""

    def __init__(self, txn: VerifiedTxnToken) -> None:
        self._txn = txn
        self._scopes: list[str] | None = None

    @property
    def scopes(self) -> list[str]:
        if self._scopes is None:
            self._scopes = sorted(self._txn.scopes)
        return self._scopes

    @scopes.setter
    def scopes(self, scopes: list[str]) -> None:
        self._scopes = list(scopes)
