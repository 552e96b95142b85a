"""Testing kit: keys, Txn-Tokens with any claim overridden, request headers, gRPC metadata, and a verifier.

::

    kit = TxnTokenKit()
    response = client.get("/orders/1", headers=kit.headers(scope="orders.read"))
    app.state.txtoken_verifier = kit.verifier  # swap the verifier of an app built elsewhere

Built on the public minting and verification API only; the tokens are real, signed with the kit's real keys. The
pytest plugin (``txtoken_pytest``) wraps the kit in opt-in fixtures.

Extension point: a credential bound to the Txn-Token a request carries (a Workload Identity Token and its proof,
whose ``tth`` hashes the Txn-Token) plugs into :meth:`TxnTokenKit.headers` and :meth:`TxnTokenKit.grpc_metadata` as
``bound``, a :data:`BoundCredentials`; kits for such credentials go in modules beside this one.
"""

from txtoken.testing.kit import DEFAULT_TRUST_DOMAIN, BoundCredentials, TxnTokenKit

__all__ = ["DEFAULT_TRUST_DOMAIN", "BoundCredentials", "TxnTokenKit"]
