"""The verified transaction as a Starlette user, so ``request.user`` and ``@requires("scope")`` work."""

from __future__ import annotations

from starlette.authentication import AuthCredentials, BaseUser

from txtoken.verify import VerifiedTxnToken

__all__ = ["TxnUser", "credentials_for"]


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


def credentials_for(txn: VerifiedTxnToken) -> AuthCredentials:
    """Starlette credentials holding the token's scopes."""
    return AuthCredentials(sorted(txn.scopes))
