"""The key proof of a WIT request: a workload proves it holds the private key it wants in its WIT's ``cnf``.

txtoken's WIT issuance protocol (no standard one exists yet; modelled on DPoP's proof JWT, RFC 9449 §4.2): the proof
is a JWT with ``typ`` ``wit-key-proof+jwt``, the public key in its ``jwk`` header (with its ``alg``, which must be the
header's ``alg``), signed with that key, and claims ``aud`` (the token service's identifier), ``iat``, ``exp`` (at
most :data:`MAX_KEY_PROOF_LIFETIME` seconds later) and a single-use ``jti``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from txtoken.errors import TokenRejected, WitKeyInvalid, WptRejected
from txtoken.jws import parse_jws, verify_jws
from txtoken.keys import ALGORITHMS, SigningKey, VerificationKey, thumbprint
from txtoken.mint import encode_jws
from txtoken.replay import MemoryReplayStore, ReplayStore
from txtoken.wimse._hash import token_hash
from txtoken.wimse.wit import proof_jwk, public_proof_key

__all__ = ["KEY_PROOF_TYP", "MAX_KEY_PROOF_LIFETIME", "KeyProofVerifier", "create_key_proof"]

KEY_PROOF_TYP = "wit-key-proof+jwt"
#: Longest lifetime of a key proof, in seconds.
MAX_KEY_PROOF_LIFETIME = 60
_LEEWAY = 5


def create_key_proof(key: SigningKey, *, audience: str, now: float | None = None) -> str:
    """A key proof for ``key`` addressed to the token service ``audience``."""
    issued = int(time.time() if now is None else now)
    claims = {"aud": audience, "iat": issued, "exp": issued + 30, "jti": secrets.token_urlsafe(16)}
    return encode_jws(claims, key, typ=KEY_PROOF_TYP, headers={"jwk": proof_jwk(key.verification_key)})


class KeyProofVerifier:
    """Checks key proofs for the token service ``audience``; raises :class:`~txtoken.errors.WptRejected` (the
    proof is a WPT-like proof of possession) or :class:`~txtoken.errors.WitKeyInvalid` for an unusable key."""

    def __init__(
        self, audience: str, *, replay_store: ReplayStore | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._audience = audience
        self._replay = replay_store if replay_store is not None else MemoryReplayStore(clock=clock)
        self._clock = clock

    async def verify(self, proof: str) -> VerificationKey:
        """The proven public key, bound to its ``alg``."""
        try:
            jws = parse_jws(proof, algorithms=frozenset(ALGORITHMS), require_kid=False)
        except TokenRejected as exc:
            raise WptRejected(f"the key proof is not acceptable: {exc.message}") from None
        if jws.header.media_type != KEY_PROOF_TYP:
            raise WptRejected(f"the key proof's typ must be {KEY_PROOF_TYP}")
        key, alg = public_proof_key(jws.header.members.get("jwk"), what="the key proof's jwk")
        if alg != jws.header.alg:
            raise WitKeyInvalid("the key proof's alg is not its jwk's alg")
        try:
            claims = verify_jws(jws, key)
        except TokenRejected as exc:
            raise WptRejected(f"the key proof is not acceptable: {exc.message}") from None
        if claims.get("aud") != self._audience:
            raise WptRejected("the key proof's aud is not this token service")
        now = self._clock()
        iat, exp, jti = claims.get("iat"), claims.get("exp"), claims.get("jti")
        if type(iat) is not int or type(exp) is not int or type(jti) is not str or not jti:
            raise WptRejected("the key proof needs integer iat and exp and a jti")
        if now >= exp + _LEEWAY or iat > now + _LEEWAY or exp - iat > MAX_KEY_PROOF_LIFETIME:
            raise WptRejected("the key proof is expired, not yet valid, or lives too long")
        replay_key = f"wit-key-proof:{token_hash(thumbprint(key.to_jwk()) + chr(10) + jti)}"
        if not await self._replay.afirst_use(replay_key, exp + _LEEWAY):
            raise WptRejected("the key proof was already used")
        return key
