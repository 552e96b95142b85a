"""Workload credentials: how a workload gets its own platform-issued credential (the "bottom turtle").

One interface, :class:`CredentialSource`, and one source per delivery pattern of the Workload Identity Practices
draft (environment variable, file, local API).
"""

from txtoken.credentials.base import Credential, CredentialSource

__all__ = ["Credential", "CredentialSource"]
