"""txtoken for ASGI apps (Starlette, FastAPI, any ASGI framework): verify, expose and authorize the Txn-Token.

::

    app = Starlette(routes=..., middleware=[Middleware(TxnTokenMiddleware, verifier=verifier, policy=policy)])

Handlers read the verified transaction with :func:`txtoken.current_transaction`, ``request.state.txn``,
``request.scope["txtoken"]``, or ``request.user`` / ``request.auth`` (Starlette's ``@requires`` works on its scopes).
A test swaps the verifier of an app built elsewhere by setting ``app.state.txtoken_verifier`` (:data:`VERIFIER_STATE`).
At the edge of the trust domain, :class:`GatewayMiddleware` turns an external access token into the transaction
instead (see ``docs/gateway.md``).
"""

from txtoken.extras import requires_extra

with requires_extra("asgi", "txtoken_asgi (the ASGI middleware)"):
    from txtoken_asgi.gateway import GatewayMiddleware
    from txtoken_asgi.middleware import VERIFIER_STATE, TxnTokenMiddleware, app_verifier
    from txtoken_asgi.user import TxnUser

__all__ = ["VERIFIER_STATE", "GatewayMiddleware", "TxnTokenMiddleware", "TxnUser", "app_verifier"]
