"""Signing: Txn-Tokens (by the TTS) and other JWTs txtoken issues (client assertions, test tokens)."""

from __future__ import annotations

import base64
import functools
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from txtoken.claims import (
    MAX_JSON_DEPTH,
    TXN_TOKEN_TYP,
    TxnTokenClaims,
    check_claims,
    is_numeric_date,
    map_legacy_claims,
    nests_deeper,
    validation_summary,
)
from txtoken.errors import ClaimInvalid, ConfigurationError, LegacyClaims
from txtoken.keys import KeySet, SigningKey
from txtoken.verify import DEFAULT_MAX_LIFETIME

__all__ = ["TxnTokenMinter", "encode_jws"]


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def encode_jws(
    payload: Mapping[str, Any], key: SigningKey, *, typ: str, headers: Mapping[str, Any] | None = None
) -> str:
    """Sign ``payload`` as a compact JWS with ``key``; the header carries ``alg``, ``kid`` and ``typ`` (unless empty).

    Built here rather than with ``jwt.encode`` (which the project used before): the TTS signs every token it issues,
    and PyJWT's general path (header merging and sorting, algorithm lookup, its own DER conversion) cost about 16 µs
    per ES256 token on top of the signature (``benchmarks/verify.py --sign`` measures both).
    """
    header = _header(headers, key.alg, key.kid, typ) if headers else _plain_header(key.alg, key.kid, typ)
    signing_input = header + b"." + _b64(_COMPACT_JSON.encode(payload))
    return (signing_input + b"." + base64.urlsafe_b64encode(key.sign(signing_input)).rstrip(b"=")).decode("ascii")


def _header(headers: Mapping[str, Any], alg: str, kid: str, typ: str) -> bytes:
    header = {**headers, "alg": alg, "typ": typ, "kid": kid}
    if not typ:
        del header["typ"]  # an empty typ leaves the member out, as jwt.encode did
    return _b64(_COMPACT_JSON.encode(header))


@functools.lru_cache(maxsize=64)
def _plain_header(alg: str, kid: str, typ: str) -> bytes:
    """The encoded header without extra members: the same for every token of a key and ``typ``."""
    return _header({}, alg, kid, typ)


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64encode(text.encode("utf-8")).rstrip(b"=")


def _checked_payload(claims: Mapping[str, Any]) -> dict[str, Any]:
    """A mapping of claims checked as :class:`TxnTokenClaims` checks them, without the claims set to None, with a
    one-member ``aud`` array as its string (as :meth:`TxnTokenClaims.to_dict` gives them)."""
    try:
        check_claims(claims)
    except ClaimInvalid as exc:
        raise ConfigurationError(f"invalid Txn-Token claims: {exc.message}") from None
    payload = {name: value for name, value in claims.items() if value is not None}
    if type(payload["aud"]) is list:
        payload["aud"] = payload["aud"][0]
    return payload


class TxnTokenMinter:
    """Signs Txn-Tokens with the active key of a key set; every token's lifetime is capped at ``max_lifetime``."""

    def __init__(
        self,
        keys: KeySet,
        *,
        trust_domain: str,
        issuer: str | None = None,
        lifetime: int = DEFAULT_MAX_LIFETIME,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < lifetime <= max_lifetime:
            raise ConfigurationError(f"lifetime must be between 1 and {max_lifetime} seconds")
        self.keys = keys
        self.trust_domain = trust_domain
        self.issuer = issuer
        self.lifetime = lifetime
        self.max_lifetime = max_lifetime
        self._clock = clock

    def claims(
        self,
        *,
        sub: str,
        scope: str,
        req_wl: str,
        tctx: Mapping[str, Any] | None = None,
        rctx: Mapping[str, Any] | None = None,
        txn: str | None = None,
        lifetime: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> TxnTokenClaims:
        """A validated claim set issued now: ``txn`` is a new UUID unless given, ``exp`` is ``iat + lifetime``."""
        iat = int(self._clock())
        data: dict[str, Any] = {**(extra or {})}
        data.update(
            iat=iat,
            exp=iat + (self.lifetime if lifetime is None else lifetime),
            aud=self.trust_domain,
            txn=txn or str(uuid.uuid4()),
            sub=sub,
            scope=scope,
            req_wl=req_wl,
        )
        if tctx is not None:
            data["tctx"] = dict(tctx)
        if rctx is not None:
            data["rctx"] = dict(rctx)
        if self.issuer is not None:
            data["iss"] = self.issuer
        try:
            return TxnTokenClaims.model_validate(data)
        except ValidationError as exc:
            raise ConfigurationError(f"invalid Txn-Token claims: {validation_summary(exc)}") from None

    def sign(self, claims: TxnTokenClaims | Mapping[str, Any]) -> str:
        """Sign a complete claim set; refuses anything a verifier would refuse (lifetime over the cap, a foreign
        ``aud``, claim names of older drafts, an ``nbf`` that is not a NumericDate, values that are not JSON or nest
        deeper than :data:`~txtoken.claims.MAX_JSON_DEPTH`).

        ``claims`` is the model, or a mapping held to the model's rules by :func:`~txtoken.claims.check_claims`
        (optional claims set to None are left out): the TTS signs a mapping, which spares it building the model and
        dumping it again for every token.
        """
        values: Iterable[Any]
        if isinstance(claims, TxnTokenClaims):
            values = [claims.tctx, claims.rctx, *(claims.model_extra or {}).values()]
        else:
            values = claims.values()
        # Before the model's serialization, which fails on values nested hundreds deep.
        if any(nests_deeper(value) for value in values if isinstance(value, dict | list)):
            raise ConfigurationError(f"Txn-Token claims must not nest deeper than {MAX_JSON_DEPTH} levels")
        # The model's values as given (not its JSON mode, which turns NaN and infinity into null): the encoder below
        # refuses what is not JSON, for the model and a mapping alike.
        payload = (
            claims.model_dump(exclude_none=True) if isinstance(claims, TxnTokenClaims) else _checked_payload(claims)
        )
        lifetime = payload["exp"] - payload["iat"]
        if not 0 < lifetime <= self.max_lifetime:
            raise ConfigurationError(f"Txn-Token lifetime must be between 1 and {self.max_lifetime} seconds")
        if payload["aud"] != self.trust_domain:
            raise ConfigurationError("aud must be this minter's trust domain")
        try:
            map_legacy_claims(payload, allow=False)
        except LegacyClaims as exc:
            raise ConfigurationError(exc.message) from None
        if "nbf" in payload and not is_numeric_date(payload["nbf"]):
            raise ConfigurationError("nbf must be a NumericDate")
        try:
            return encode_jws(payload, self.keys.active, typ=TXN_TOKEN_TYP)
        except (TypeError, ValueError):
            raise ConfigurationError("Txn-Token claims must be JSON values (no NaN or infinity)") from None

    def mint(self, **kwargs: Any) -> str:
        """``sign(claims(**kwargs))``: a new Txn-Token."""
        return self.sign(self.claims(**kwargs))
