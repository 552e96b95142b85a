"""Workload Proof Tokens (draft-ietf-wimse-wpt §2): creating and verifying.

A WPT (``typ`` ``wpt+jwt``) is signed by the calling workload with the key of its WIT's ``cnf.jwk`` and binds one
request: its target (``aud``), a short life (``exp``), a single-use ``jti``, the WIT (``wth``), and the other tokens
sent with it: the Txn-Token (``tth``), an OAuth access token (``ath``) and other headers (``oth``).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from txtoken.errors import (
    AlgorithmNotAllowed,
    ConfigurationError,
    SignatureInvalid,
    TokenRejected,
    WptAccessTokenHashMismatch,
    WptAlgMismatch,
    WptAudienceMismatch,
    WptExpired,
    WptLifetimeTooLong,
    WptOtherTokenInvalid,
    WptRejected,
    WptReplayed,
    WptSignatureInvalid,
    WptTxnTokenHashMismatch,
    WptTypMismatch,
    WptWitHashMismatch,
)
from txtoken.jws import DEFAULT_MAX_TOKEN_SIZE, CompactJws, parse_jws, verify_jws
from txtoken.keys import SigningKey
from txtoken.mint import encode_jws
from txtoken.replay import MemoryReplayStore, ReplayStore
from txtoken.wimse._hash import token_hash
from txtoken.wimse.wit import VerifiedWit

__all__ = [
    "DEFAULT_WPT_LEEWAY",
    "DEFAULT_WPT_LIFETIME",
    "DEFAULT_WPT_MAX_LIFETIME",
    "WPT_TYP",
    "VerifiedWpt",
    "WptVerifier",
    "create_wpt",
    "target_uri",
]

#: JOSE ``typ`` of a WPT; media type ``application/wpt+jwt``.
WPT_TYP = "wpt+jwt"
#: Lifetime of a WPT txtoken creates, in seconds.
DEFAULT_WPT_LIFETIME = 30
#: Longest remaining lifetime (``exp`` - now, and ``exp - iat`` when present) a verifier accepts, in seconds.
DEFAULT_WPT_MAX_LIFETIME = 60
#: Clock-skew leeway for a WPT, in seconds: small, since a WPT lives for seconds.
DEFAULT_WPT_LEEWAY = 5
_DEFAULT_PORTS = {"https": 443, "http": 80}
#: A longer ``jti`` is refused (128 random bits take 22 characters); it keeps replay-store keys small.
MAX_JTI_LENGTH = 256


def target_uri(uri: str) -> str | None:
    """``uri`` normalised for ``aud`` comparison: scheme and host lowercased, default port, query and fragment
    dropped; None if it is not an absolute URI."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname or parts.username is not None or parts.password is not None:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    authority = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return f"{scheme}://{authority}{parts.path or '/'}"


def create_wpt(
    key: SigningKey,
    *,
    wit: str,
    audience: str,
    txn_token: str | None = None,
    access_token: str | None = None,
    other_tokens: Mapping[str, str] | None = None,
    lifetime: int = DEFAULT_WPT_LIFETIME,
    now: float | None = None,
) -> str:
    """A fresh WPT for one request, signed with the workload's ``key`` (the private half of its WIT's ``cnf.jwk``).

    ``audience`` is the target URI (its query and fragment are dropped); ``tth``, ``ath`` and ``oth`` hash the exact
    values sent in the ``Txn-Token``, ``Authorization`` (the token after ``Bearer``) and other headers (name -> value).
    """
    aud = audience.split("#", 1)[0].split("?", 1)[0]
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "aud": aud,
        "iat": issued,
        "exp": issued + lifetime,
        "jti": secrets.token_urlsafe(16),
        "wth": token_hash(wit),
    }
    if txn_token is not None:
        claims["tth"] = token_hash(txn_token)
    if access_token is not None:
        claims["ath"] = token_hash(access_token)
    if other_tokens:
        claims["oth"] = {name.lower(): token_hash(value.strip()) for name, value in other_tokens.items()}
    return encode_jws(claims, key, typ=WPT_TYP)


class VerifiedWpt:
    """A WPT that passed verification; ``repr`` leaves the token out."""

    __slots__ = ("claims", "jti", "token")

    def __init__(self, token: str, claims: Mapping[str, Any]) -> None:
        self.token = token
        self.claims: Mapping[str, Any] = MappingProxyType(claims)  # the verifier's own parsed copy
        self.jti: str = claims["jti"]

    def __repr__(self) -> str:
        return f"VerifiedWpt(jti={self.jti!r})"


def _hash_matches(claimed: object, value: str) -> bool:
    if not isinstance(claimed, str):
        return False
    return hmac.compare_digest(claimed.encode("ascii", "replace"), token_hash(value).encode("ascii"))


class WptVerifier:
    """Verifies WPTs of already verified WITs (draft-ietf-wimse-wpt §2, the recipient's list).

    Checks, in order: one well-formed compact JWS; ``typ`` ``wpt+jwt``; ``alg`` equal to the WIT's ``cnf.jwk.alg``;
    the signature with the WIT's ``cnf`` key only; ``aud`` one of the receiver's target URIs (query and fragment
    ignored; the receiver passes them from its configuration, never from ``Host``); ``exp`` present and not passed,
    and no more than ``max_lifetime`` ahead (nor ``exp - iat`` longer), with ``leeway``; ``wth`` the WIT sent;
    ``tth``/``ath`` present exactly when a Txn-Token/access token is sent, and matching it; every ``oth`` entry
    named in ``other_token_headers`` and matching its header; and last, ``jti`` not seen before in its lifetime
    (``replay_store``; namespaced by the caller).
    """

    def __init__(
        self,
        *,
        replay_store: ReplayStore | None = None,
        max_lifetime: int = DEFAULT_WPT_MAX_LIFETIME,
        leeway: int = DEFAULT_WPT_LEEWAY,
        other_token_headers: Iterable[str] = (),
        max_token_size: int = DEFAULT_MAX_TOKEN_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_lifetime <= 0 or leeway < 0:
            raise ConfigurationError("max_lifetime must be positive and leeway not negative")
        self.replay_store: ReplayStore = replay_store if replay_store is not None else MemoryReplayStore(clock=clock)
        self._max_lifetime = max_lifetime
        self._leeway = leeway
        self.other_token_headers = frozenset(name.lower() for name in other_token_headers)
        self._max_token_size = max_token_size
        self._clock = clock

    def verify(
        self,
        token: str,
        *,
        wit: VerifiedWit,
        audience: str | Collection[str],
        txn_token: str | None = None,
        access_token: str | None = None,
        other_tokens: Mapping[str, str] | None = None,
    ) -> VerifiedWpt:
        """Verify ``token`` for a request that carried ``wit`` and the given tokens; see the class for the checks."""
        claims, replay_key, expires = self._check(token, wit, audience, txn_token, access_token, other_tokens)
        if not self.replay_store.first_use(replay_key, expires):
            raise WptReplayed("the WPT's jti was already used")
        return VerifiedWpt(token, claims)

    async def averify(
        self,
        token: str,
        *,
        wit: VerifiedWit,
        audience: str | Collection[str],
        txn_token: str | None = None,
        access_token: str | None = None,
        other_tokens: Mapping[str, str] | None = None,
    ) -> VerifiedWpt:
        """Like :meth:`verify`; the replay check is awaited."""
        claims, replay_key, expires = self._check(token, wit, audience, txn_token, access_token, other_tokens)
        if not await self.replay_store.afirst_use(replay_key, expires):
            raise WptReplayed("the WPT's jti was already used")
        return VerifiedWpt(token, claims)

    def _check(
        self,
        token: str,
        wit: VerifiedWit,
        audience: str | Collection[str],
        txn_token: str | None,
        access_token: str | None,
        other_tokens: Mapping[str, str] | None,
    ) -> tuple[dict[str, Any], str, float]:
        claims = self._signed_claims(token, wit)
        self._check_audience(claims.get("aud"), audience)
        expires = self._check_times(claims)
        jti = claims.get("jti")
        if type(jti) is not str or not jti:
            raise WptRejected("the WPT's jti is missing")
        if len(jti) > MAX_JTI_LENGTH:
            raise WptRejected(f"the WPT's jti is longer than {MAX_JTI_LENGTH} characters")
        wth = claims.get("wth")
        if not isinstance(wth, str) or not hmac.compare_digest(wth.encode("ascii", "replace"), wit.wth.encode("ascii")):
            raise WptWitHashMismatch("the WPT's wth does not match the WIT sent")
        self._check_bound("tth", claims, txn_token, WptTxnTokenHashMismatch, "Txn-Token")
        self._check_bound("ath", claims, access_token, WptAccessTokenHashMismatch, "access token")
        self._check_other(claims.get("oth"), other_tokens or {})
        # Namespaced by the caller: one workload's jti values cannot collide with (or pre-empt) another's.
        return claims, f"wpt:{jti} {wit.workload}", expires

    def _signed_claims(self, token: str, wit: VerifiedWit) -> dict[str, Any]:
        jws: CompactJws
        try:
            jws = parse_jws(
                token, algorithms=frozenset({wit.proof_alg}), max_size=self._max_token_size, require_kid=False
            )
        except AlgorithmNotAllowed:
            raise WptAlgMismatch("the WPT's alg is not the WIT's cnf.jwk.alg") from None
        except SignatureInvalid:
            raise WptSignatureInvalid("the WPT has no signature") from None
        except TokenRejected as exc:
            raise WptRejected(f"the WPT is not acceptable: {exc.message}") from None
        if jws.header.media_type != WPT_TYP:
            raise WptTypMismatch(f"the WPT's typ must be {WPT_TYP}")
        try:
            return verify_jws(jws, wit.key)
        except SignatureInvalid:
            raise WptSignatureInvalid("the WPT's signature does not verify with the WIT's cnf key") from None
        except TokenRejected as exc:
            raise WptRejected(f"the WPT is not acceptable: {exc.message}") from None

    @staticmethod
    def _check_audience(aud: object, audience: str | Collection[str]) -> None:
        targets = [audience] if isinstance(audience, str) else audience
        if isinstance(aud, str) and aud in targets:
            return  # the usual case, exactly the configured spelling: no normalisation needed
        accepted = {target_uri(a) for a in targets} - {None}
        claimed = aud if isinstance(aud, list) else [aud]
        if not any(isinstance(a, str) and target_uri(a) in accepted for a in claimed):
            raise WptAudienceMismatch("the WPT's aud is not this receiver's target URI")

    def _check_times(self, claims: Mapping[str, Any]) -> float:
        now = self._clock()
        exp = claims.get("exp")
        if type(exp) is not int:
            raise WptRejected("the WPT's exp is missing or not an integer")
        if now >= exp + self._leeway:
            raise WptExpired("the WPT has expired")
        if exp - now > self._max_lifetime + self._leeway:
            raise WptLifetimeTooLong(f"the WPT expires more than {self._max_lifetime}s ahead")
        iat = claims.get("iat")
        if iat is not None:
            if type(iat) is not int:
                raise WptRejected("the WPT's iat is not an integer")
            if iat > now + self._leeway:
                raise WptRejected("the WPT's iat is in the future")
            if exp - iat > self._max_lifetime:
                raise WptLifetimeTooLong(f"the WPT's lifetime exceeds {self._max_lifetime}s")
        return exp + self._leeway

    @staticmethod
    def _check_bound(
        name: str, claims: Mapping[str, Any], value: str | None, error: type[WptRejected], what: str
    ) -> None:
        claimed = claims.get(name)
        if value is None:
            if claimed is not None:
                raise error(f"the WPT's {name} names a {what} the request does not carry")
        elif claimed is None:
            raise error(f"the WPT has no {name} although a {what} is sent")
        elif not _hash_matches(claimed, value):
            raise error(f"the WPT's {name} does not match the {what} sent")

    def _check_other(self, oth: object, other_tokens: Mapping[str, str]) -> None:
        if oth is None:
            return
        if not isinstance(oth, dict):
            raise WptOtherTokenInvalid("the WPT's oth is not a JSON object")
        sent = {name.lower(): value for name, value in other_tokens.items()}
        for name, claimed in oth.items():
            if name not in self.other_token_headers:
                raise WptOtherTokenInvalid("the WPT's oth has an entry this receiver does not know")
            value = sent.get(name)
            if value is None or not _hash_matches(claimed, value.strip()):
                raise WptOtherTokenInvalid("an oth entry does not match its header")
