"""Compact JWS: parse, check the header, verify the signature, decode the payload.

Every JWT txtoken accepts (Txn-Tokens, and in the token service subject tokens and client assertions) goes through
these two steps, :func:`parse_jws` then :func:`verify_jws`, with the caller's own ``typ`` and claim rules.

This deliberately does not call ``jwt.decode``: verification runs at every hop, and PyJWT's decode spends about as
long on parsing, option handling and re-validation as on the signature itself (``benchmarks/verify.py`` measures
both on the same token). The cryptography is still the ``cryptography`` package's; what is written here is the
compact serialization (RFC 7515 §7.1), with stricter parsing than PyJWT: canonical base64url without padding, JSON
without duplicate members (RFC 7515 §4, RFC 8725 §3.12 parser differentials) and no ``NaN``/``Infinity``.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import pydantic_core

from txtoken.errors import AlgorithmNotAllowed, SignatureInvalid, TokenMalformed, TokenTooLarge
from txtoken.keys import VerificationKey

__all__ = [
    "DEFAULT_MAX_TOKEN_SIZE",
    "CompactJws",
    "JwsHeader",
    "b64url_decode",
    "media_type",
    "parse_jws",
    "typ_matches",
    "verify_jws",
]

DEFAULT_MAX_TOKEN_SIZE = 8192

_TO_STANDARD_ALPHABET = bytes.maketrans(b"-_", b"+/")
# The last character of an unpadded segment of length 4k+2 (4k+3) carries 4 (2) unused bits, which must be zero:
# otherwise several strings decode to the same bytes, and one signed token has many spellings.
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}
_HEADER_CACHE_SIZE = 256


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise TokenMalformed("duplicate JSON member")
    return obj


def _reject_constant(name: str) -> Any:
    raise TokenMalformed(f"{name} is not JSON")


_JSON = json.JSONDecoder(object_pairs_hook=_unique_members, parse_constant=_reject_constant)


def b64url_decode(segment: str) -> bytes:
    """Decode unpadded base64url (RFC 7515 §2); anything else is :class:`TokenMalformed`."""
    last = _CANONICAL_LAST.get(len(segment) % 4)
    if last is not None and segment[-1] not in last:
        raise TokenMalformed("not canonical base64url")
    try:
        encoded = segment.encode("ascii")
        # One pass: map to the standard alphabet and drop '+', '/' and '=', which base64url must not contain.
        data = encoded.translate(_TO_STANDARD_ALPHABET, b"+/=")
        if len(data) != len(encoded):
            raise ValueError
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4), strict_mode=True)
    except (binascii.Error, ValueError):
        raise TokenMalformed("not base64url") from None


def _string_count(value: dict[str, Any] | list[Any]) -> int:
    """How many strings (member names and string values) a parsed JSON object or array holds."""
    items: Iterable[Any]
    if isinstance(value, dict):
        count, items = len(value), value.values()
    else:
        count, items = 0, value
    for item in items:
        kind = type(item)
        if kind is str:
            count += 1
        elif kind is dict or kind is list:
            count += _string_count(item)
    return count


def _json_object(segment: str, what: str) -> dict[str, Any]:
    raw = b64url_decode(segment)
    if b"\\" not in raw:
        # Fast path (pydantic-core's parser is about twice as fast as json's, but keeps the last of duplicate
        # members). Without backslashes every '"' delimits a string, so a dropped duplicate member shows up as more
        # quotes than the parsed value has strings; then the strict parser below says so.
        try:
            value = pydantic_core.from_json(raw, allow_inf_nan=False, cache_strings=False)
        except ValueError:
            raise TokenMalformed(f"{what} is not JSON") from None
        if type(value) is dict and raw.count(b'"') == 2 * _string_count(value):
            return value
    try:
        value = _JSON.decode(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise TokenMalformed(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise TokenMalformed(f"{what} is not a JSON object")
    return value


def media_type(typ: object) -> str | None:
    """A ``typ`` value normalised for comparison (RFC 7515 §4.1.9): lowercase, without ``application/``."""
    if not isinstance(typ, str):
        return None
    value = typ.lower()
    return value[len("application/") :] if value.startswith("application/") else value


def typ_matches(typ: object, expected: str) -> bool:
    """Whether ``typ`` names the media type ``expected`` (case-insensitive, ``application/`` optional)."""
    return media_type(typ) == media_type(expected)


@dataclass(frozen=True, slots=True)
class JwsHeader:
    """The JOSE header fields txtoken uses. Key-carrying headers (``jku``, ``x5u``, ``jwk``, ``x5c``) are ignored."""

    alg: str
    kid: str  # empty when the header has none
    typ: str | None
    media_type: str | None
    members: Mapping[str, Any]


class CompactJws(NamedTuple):
    """A parsed, not yet verified, compact JWS."""

    header: JwsHeader
    signing_input: bytes
    payload: str
    signature: str


_header_cache: dict[str, JwsHeader] = {}


def _parse_header(segment: str) -> JwsHeader:
    header = _header_cache.get(segment)
    if header is not None:
        return header
    members = _json_object(segment, "header")
    alg = members.get("alg")
    if not isinstance(alg, str):
        raise TokenMalformed("header has no 'alg'")
    kid = members.get("kid", "")
    if not isinstance(kid, str) or (not kid and "kid" in members):
        raise TokenMalformed("header 'kid' is not a non-empty string")
    if "crit" in members:
        # No extension is understood here, so a critical one must be refused (RFC 7515 §4.1.11).
        raise TokenMalformed("header has a 'crit' extension")
    if members.get("b64", True) is not True:
        raise TokenMalformed("unencoded payloads are not accepted")
    typ = members.get("typ")
    header = JwsHeader(alg, kid, typ if isinstance(typ, str) else None, media_type(typ), members)
    # Valid headers repeat (one per key); caching them saves a base64 + JSON parse per token.
    if len(_header_cache) >= _HEADER_CACHE_SIZE:
        _header_cache.clear()
    _header_cache[segment] = header
    return header


def parse_jws(
    token: str, *, algorithms: frozenset[str], max_size: int = DEFAULT_MAX_TOKEN_SIZE, require_kid: bool = True
) -> CompactJws:
    """Split a compact JWS and check its header: size, shape, ``alg`` in ``algorithms``, no ``crit``, and a ``kid``
    (a non-empty string), unless ``require_kid`` is off: then a header without one is accepted, and the caller picks
    the key (a Txn-Token or a JWT the TTS receives: the only key its source holds for the ``alg``; a Workload Proof
    Token: the key the WIT confirms)."""
    if len(token) > max_size:
        raise TokenTooLarge(f"token longer than {max_size} bytes")
    try:
        data = token.encode("ascii")
    except UnicodeEncodeError:
        raise TokenMalformed("token is not ASCII") from None
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenMalformed("not a compact JWS (three dot-separated parts)")
    header_segment, payload, signature = parts
    if not signature:
        raise SignatureInvalid("signature missing")
    header = _parse_header(header_segment)
    if require_kid and not header.kid:
        raise TokenMalformed("header has no 'kid'")
    if header.alg not in algorithms:
        raise AlgorithmNotAllowed("the token's algorithm is not allowed")  # not echoed: attacker-chosen text
    return CompactJws(header, data[: len(header_segment) + 1 + len(payload)], payload, signature)


def verify_jws(jws: CompactJws, key: VerificationKey) -> dict[str, Any]:
    """Verify the signature with ``key`` (whose algorithm must be the header's) and return the JSON payload."""
    if not key.accepts(jws.header.alg):
        raise AlgorithmNotAllowed(f"key {key.kid!r} is bound to {key.alg}, not {jws.header.alg}")
    if not key.verify(jws.signing_input, b64url_decode(jws.signature)):
        raise SignatureInvalid("signature does not verify")
    return _json_object(jws.payload, "payload")
