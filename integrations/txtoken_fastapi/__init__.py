"""txtoken for FastAPI: the verified transaction as a security dependency, with scopes and an OpenAPI scheme, and
(WIMSE) the authenticated calling workload as another.

::

    txn_token = TxnTokenSecurity(verifier)  # or TxnTokenSecurity() behind TxnTokenMiddleware
    caller = CallerSecurity(CallerVerifier(...), service_urls=["https://orders.shop.example"])

    @app.get("/orders/{id}")
    def order(id: int, txn: VerifiedTxnToken = Security(txn_token, scopes=["orders.read"])) -> Order: ...

    @app.post("/charges")
    def charge(who: VerifiedCaller = Security(caller, scopes=["spiffe://shop.example/ns/shop/sa/orders"])) -> ...

Needs FastAPI: ``pip install 'txtoken[fastapi]'``.
"""

from txtoken.extras import requires_extra

with requires_extra("fastapi", "txtoken_fastapi (the FastAPI security dependency)"):
    from txtoken_fastapi.caller import CallerSecurity
    from txtoken_fastapi.refusal import TxnTokenHTTPException, problem_details
    from txtoken_fastapi.security import TxnTokenSecurity, docs_paths

__all__ = ["CallerSecurity", "TxnTokenHTTPException", "TxnTokenSecurity", "docs_paths", "problem_details"]
