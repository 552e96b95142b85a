"""txtoken for httpx: forward the current Txn-Token on outbound requests, only inside the trust domain.

::

    auth = TxnTokenAuth(trusted_hosts=["payments.internal", ".svc.cluster.local"])
    client = httpx.AsyncClient(auth=auth, event_hooks=auth.async_event_hooks)
"""

from txtoken_httpx.auth import TxnTokenAuth

__all__ = ["TxnTokenAuth"]
