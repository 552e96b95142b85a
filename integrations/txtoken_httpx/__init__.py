"""txtoken for httpx: forward the current Txn-Token on outbound requests, only inside the trust domain.

::

    auth = TxnTokenAuth(trusted_hosts=["payments.internal", ".svc.cluster.local"])
    client = httpx.AsyncClient(auth=auth, event_hooks=auth.async_event_hooks)

Calls that leave the trust domain use :class:`EgressAuth` instead: an access token of the other domain, obtained with
the workload's own credential, and never the Txn-Token (``docs/egress.md``).
"""

from txtoken_httpx.auth import TxnTokenAuth
from txtoken_httpx.egress import INTERNAL_HEADERS, EgressAuth

__all__ = ["INTERNAL_HEADERS", "EgressAuth", "TxnTokenAuth"]
