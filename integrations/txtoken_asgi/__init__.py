"""txtoken for ASGI apps (Starlette, FastAPI, any ASGI framework): verify, expose and authorize the Txn-Token.

::

    app = Starlette(routes=..., middleware=[Middleware(TxnTokenMiddleware, verifier=verifier, policy=policy)])

Handlers read the verified transaction with :func:`txtoken.current_transaction`, ``request.state.txn``,
``request.scope["txtoken"]``, or ``request.user`` / ``request.auth`` (Starlette's ``@requires`` works on its scopes).
At the edge of the trust domain, :class:`GatewayMiddleware` turns an external access token into the transaction
instead (see ``docs/gateway.md``).
"""

from txtoken_asgi.gateway import GatewayMiddleware
from txtoken_asgi.middleware import TxnTokenMiddleware
from txtoken_asgi.user import TxnUser

__all__ = ["GatewayMiddleware", "TxnTokenMiddleware", "TxnUser"]
