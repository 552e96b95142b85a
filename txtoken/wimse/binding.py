"""Where WIT and WPT travel, and what a WPT's ``aud`` and ``ath`` cover, for HTTP and gRPC alike.

- HTTP: headers ``Workload-Identity-Token`` and ``Workload-Proof-Token``; ``aud`` is the target URI without query
  or fragment (the receiver's configured service URL + the request path as sent, never ``Host``).
- gRPC (no standard binding yet; txtoken's choice): metadata keys ``workload-identity-token`` and
  ``workload-proof-token``; ``aud`` is ``https://<authority>/<package.Service>/<Method>``, the URI an HTTP/2 request
  for the call has, with ``authority`` configured on both sides (the client's target, the server's service name).
- ``ath`` covers the token of an ``Authorization: Bearer <token>`` (or ``DPoP <token>``) header or metadata entry.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "WIT_HEADER",
    "WIT_METADATA_KEY",
    "WPT_HEADER",
    "WPT_METADATA_KEY",
    "access_token",
    "grpc_audience",
    "http_audiences",
]

#: HTTP header carrying the caller's WIT (workload-creds §5.1.1).
WIT_HEADER = "Workload-Identity-Token"
#: HTTP header carrying the request's WPT (wpt §2).
WPT_HEADER = "Workload-Proof-Token"
#: gRPC metadata keys: the lowercase header names.
WIT_METADATA_KEY = "workload-identity-token"
WPT_METADATA_KEY = "workload-proof-token"

_TOKEN_SCHEMES = frozenset({"bearer", "dpop"})


def access_token(authorization: str | None) -> str | None:
    """The access token of an ``Authorization`` value (``Bearer`` or ``DPoP`` scheme), else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() in _TOKEN_SCHEMES and token else None


def grpc_audience(authority: str, method: str) -> str:
    """The WPT ``aud`` of a gRPC call: ``https://<authority><method>`` (``method`` is ``/package.Service/Method``)."""
    return f"https://{authority}{method}"


def http_audiences(service_urls: Iterable[str], raw_path: str) -> list[str]:
    """The target URIs a request for ``raw_path`` (as sent, without query) may name: each configured service URL
    (``https://payments.shop.example``, or with a path prefix) followed by the path."""
    return [url.rstrip("/") + raw_path for url in service_urls]
