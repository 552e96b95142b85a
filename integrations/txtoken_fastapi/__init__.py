"""txtoken for FastAPI: the verified transaction as a security dependency, with scopes and an OpenAPI scheme.

::

    txn_token = TxnTokenSecurity(verifier)  # or TxnTokenSecurity() behind TxnTokenMiddleware

    @app.get("/orders/{id}")
    def order(id: int, txn: VerifiedTxnToken = Security(txn_token, scopes=["orders.read"])) -> Order: ...

Needs FastAPI: ``pip install 'txtoken[fastapi]'``.
"""

from txtoken.extras import requires_extra

with requires_extra("fastapi", "txtoken_fastapi (the FastAPI security dependency)"):
    from txtoken_fastapi.security import TxnTokenHTTPException, TxnTokenSecurity, docs_paths

__all__ = ["TxnTokenHTTPException", "TxnTokenSecurity", "docs_paths"]
