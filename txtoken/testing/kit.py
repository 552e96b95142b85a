"""``TxnTokenKit``: a stand-in for the Txn-Token Service of one trust domain, for tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from txtoken.claims import GRPC_METADATA_KEY, HTTP_HEADER, TXN_TOKEN_TYP
from txtoken.keys import DEFAULT_ALGORITHM, Algorithm, KeySet
from txtoken.mint import encode_jws
from txtoken.verify import TxnTokenVerifier, VerifiedTxnToken

__all__ = ["DEFAULT_TRUST_DOMAIN", "BoundCredentials", "TxnTokenKit"]

#: The kit's default trust domain (``.example`` is reserved for examples, RFC 2606).
DEFAULT_TRUST_DOMAIN = "test.example"
#: Given the Txn-Token of a request, the further headers (or metadata entries) that go with it and are bound to it.
BoundCredentials: TypeAlias = Callable[[str], Mapping[str, str]]


class TxnTokenKit:
    """Keys, Txn-Tokens and a verifier for one trust domain.

    :meth:`mint` signs a Txn-Token with sensible defaults (``sub`` ``user-1``, ``scope`` ``test``, ``req_wl`` the
    kit's test client, a new ``txn``, issued now for ``lifetime`` seconds); every claim can be overridden, ``None``
    leaves one out, and nothing is checked, so a test can also mint what a verifier must refuse. ``verifier``
    verifies the kit's tokens as a service of the trust domain would. ``keys`` (a :class:`~txtoken.keys.KeySet`)
    default to a new ``alg`` key; ``clock`` drives issuing and verifying alike.
    """

    def __init__(
        self,
        *,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        alg: Algorithm = DEFAULT_ALGORITHM,
        keys: KeySet | None = None,
        issuer: str | None = None,
        lifetime: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.trust_domain = trust_domain
        self.keys = keys or KeySet.generate(alg)
        self.issuer = issuer
        self.lifetime = lifetime
        self.clock = clock
        self.defaults: dict[str, Any] = {
            "sub": "user-1",
            "scope": "test",
            "req_wl": f"spiffe://{trust_domain}/test-client",
        }
        self.verifier = TxnTokenVerifier(self.keys, trust_domain=trust_domain, issuer=issuer, clock=clock)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """The claim set :meth:`mint` signs: the defaults, then ``overrides`` (``None`` removes a claim). Without an
        ``exp`` override, ``exp`` is ``iat + lifetime``."""
        now = int(self.clock())
        claims: dict[str, Any] = {"iat": now, "aud": self.trust_domain, "txn": str(uuid.uuid4()), **self.defaults}
        if self.issuer is not None:
            claims["iss"] = self.issuer
        claims.update(overrides)
        if "exp" not in claims and type(claims["iat"]) is int:
            claims["exp"] = claims["iat"] + self.lifetime
        return {name: value for name, value in claims.items() if value is not None}

    def mint(self, **claims: Any) -> str:
        """A Txn-Token signed with the kit's active key: ``mint(scope="orders.read", tctx={"order": 7})``."""
        return encode_jws(self.claims(**claims), self.keys.active, typ=TXN_TOKEN_TYP)

    def verified(self, **claims: Any) -> VerifiedTxnToken:
        """A minted token, verified: for code that takes a transaction (``with use_transaction(kit.verified()):``)."""
        return self.verifier.verify(self.mint(**claims))

    def headers(
        self, token: str | None = None, *, bound: BoundCredentials | None = None, **claims: Any
    ) -> dict[str, str]:
        """HTTP request headers carrying ``token``, or a token minted from ``claims``; ``bound(token)`` adds the
        headers of credentials bound to it."""
        token = self.mint(**claims) if token is None else token
        return {HTTP_HEADER: token, **(bound(token) if bound is not None else {})}

    def grpc_metadata(
        self, token: str | None = None, *, bound: BoundCredentials | None = None, **claims: Any
    ) -> tuple[tuple[str, str], ...]:
        """gRPC call metadata carrying ``token``, or a token minted from ``claims``; ``bound(token)`` adds entries."""
        token = self.mint(**claims) if token is None else token
        extra = bound(token) if bound is not None else {}
        return ((GRPC_METADATA_KEY, token), *((name.lower(), value) for name, value in extra.items()))
