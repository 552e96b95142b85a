"""Workload credentials: how a workload gets its own platform-issued credential (the "bottom turtle").

One interface, :class:`CredentialSource`, and one source per delivery pattern of the Workload Identity Practices
draft: an environment variable, a file, a local API (the SPIFFE Workload API, a cloud metadata service), a CI/CD
OIDC token, or a key pair that signs its own client assertion; and the workload's WIMSE identity (a WIT and its
key). See ``docs/credentials.md``.
"""

from txtoken.credentials._cache import DEFAULT_REFRESH_MARGIN
from txtoken.credentials.base import Credential, CredentialSource
from txtoken.credentials.ci import GitHubActionsOidcSource, GitLabIdTokenSource
from txtoken.credentials.env import EnvCredentialSource
from txtoken.credentials.file import KUBERNETES_TOKEN_PATH, FileCredentialSource
from txtoken.credentials.keypair import CLIENT_ASSERTION_TYP, KeyPairAssertionSource
from txtoken.credentials.metadata import MetadataIdentitySource
from txtoken.credentials.spiffe import SpiffeJwtSource
from txtoken.credentials.wit import TokenServiceWitSource, WitFileSource, WorkloadIdentity, WorkloadIdentitySource

__all__ = [
    "CLIENT_ASSERTION_TYP",
    "DEFAULT_REFRESH_MARGIN",
    "KUBERNETES_TOKEN_PATH",
    "Credential",
    "CredentialSource",
    "EnvCredentialSource",
    "FileCredentialSource",
    "GitHubActionsOidcSource",
    "GitLabIdTokenSource",
    "KeyPairAssertionSource",
    "MetadataIdentitySource",
    "SpiffeJwtSource",
    "TokenServiceWitSource",
    "WitFileSource",
    "WorkloadIdentity",
    "WorkloadIdentitySource",
]
