"""txtoken for FastAPI: the verified transaction as a security dependency, with scopes and an OpenAPI scheme.

::

    txn_token = TxnTokenSecurity(verifier)  # or TxnTokenSecurity() behind TxnTokenMiddleware

    @app.get("/orders/{id}")
    def order(id: int, txn: VerifiedTxnToken = Security(txn_token, scopes=["orders.read"])) -> Order: ...

Needs FastAPI: ``pip install 'txtoken[fastapi]'``.
"""

try:
    import fastapi  # noqa: F401
except ImportError as exc:
    raise ImportError("txtoken_fastapi needs FastAPI: pip install 'txtoken[fastapi]'", name=exc.name) from exc

from txtoken_fastapi.security import TxnTokenHTTPException, TxnTokenSecurity, docs_paths

__all__ = ["TxnTokenHTTPException", "TxnTokenSecurity", "docs_paths"]
