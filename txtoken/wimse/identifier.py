"""Workload Identifiers (draft-ietf-wimse-identifier §4) and the caller patterns of route policies.

A Workload Identifier is an absolute URI whose authority is the trust domain, with no query, fragment, userinfo or
port, and a path naming the workload: ``spiffe://shop.example/ns/shop/sa/inventory``. Identifiers are compared as
complete URIs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from txtoken.errors import ConfigurationError, WitSubjectInvalid

__all__ = [
    "DEFAULT_SCHEMES",
    "MAX_IDENTIFIER_LENGTH",
    "CallerPattern",
    "check_workload_identifier",
    "check_trust_domain",
]

#: The schemes accepted by default: SPIFFE IDs and the identifier draft's ``wimse`` scheme.
DEFAULT_SCHEMES = frozenset({"spiffe", "wimse"})
#: Longer identifiers are refused (the SPIFFE limit; the identifier draft says they SHOULD NOT exceed it).
MAX_IDENTIFIER_LENGTH = 2048

# A DNS name: labels of letters, digits and hyphens. Lowercase only, as SPIFFE requires of trust domains.
_TRUST_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")
_IPV4 = re.compile(r"\d+(?:\.\d+){3}")
# scheme "://" authority path, where the path is one or more "/" segments of RFC 3986 pchars.
_IDENTIFIER = re.compile(r"([a-z][a-z0-9+.-]*)://([^/?#]*)((?:/[A-Za-z0-9\-._~%!$&'()*+,;=:@]*)+)")


def check_trust_domain(trust_domain: str) -> str:
    """A configured trust domain: a lowercase DNS name, not an IP address (raises :class:`ConfigurationError`)."""
    if not _TRUST_DOMAIN.fullmatch(trust_domain) or _IPV4.fullmatch(trust_domain):
        raise ConfigurationError("a trust domain must be a lowercase DNS name (no scheme, port or IP address)")
    return trust_domain


def check_workload_identifier(value: object, trust_domain: str, *, schemes: Iterable[str] = DEFAULT_SCHEMES) -> str:
    """``value`` if it is a Workload Identifier in ``trust_domain``; otherwise :class:`WitSubjectInvalid`."""
    if not isinstance(value, str) or not value:
        raise WitSubjectInvalid("sub is not a string")
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise WitSubjectInvalid(f"sub is longer than {MAX_IDENTIFIER_LENGTH} characters")
    match = _IDENTIFIER.fullmatch(value)
    if match is None:
        raise WitSubjectInvalid("sub is not an absolute URI with a path, without query or fragment")
    scheme, authority, path = match.groups()
    if scheme not in frozenset(schemes):
        raise WitSubjectInvalid("sub has a scheme that is not accepted")
    if "@" in authority or ":" in authority:
        raise WitSubjectInvalid("sub carries userinfo or a port")
    if authority != trust_domain:
        raise WitSubjectInvalid("sub is not in the configured trust domain")
    if path == "/":
        raise WitSubjectInvalid("sub names the trust domain, not a workload")
    return value


class CallerPattern:
    """Which calling workloads a route accepts: an exact identifier, or a prefix pattern ending in ``/*``.

    ``spiffe://shop.example/ns/shop/sa/inventory`` matches only that identifier (complete-URI comparison);
    ``spiffe://shop.example/ns/shop/*`` matches every identifier below ``spiffe://shop.example/ns/shop/`` (at least
    one more character), and nothing in another trust domain or namespace.
    """

    __slots__ = ("_exact", "_prefix", "pattern")

    def __init__(self, pattern: str) -> None:
        if not isinstance(pattern, str) or not _IDENTIFIER.fullmatch(pattern.removesuffix("*") + "x"):
            raise ConfigurationError("a caller pattern is a Workload Identifier, optionally ending in '/*'")
        if "*" in pattern.removesuffix("/*"):
            raise ConfigurationError("'*' may only end a caller pattern, as '/*'")
        self.pattern = pattern
        self._exact = not pattern.endswith("/*")
        self._prefix = pattern if self._exact else pattern[:-1]

    def matches(self, workload: str) -> bool:
        """Whether the authenticated caller ``workload`` is one this pattern names."""
        if self._exact:
            return workload == self._prefix
        return len(workload) > len(self._prefix) and workload.startswith(self._prefix)

    def __repr__(self) -> str:
        return f"CallerPattern({self.pattern!r})"
