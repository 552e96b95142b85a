"""Signing keys, verification keys, key sets with rotation, JWK/JWKS import and export, RFC 7638 ``kid``.

Each key is bound to exactly one algorithm (RFC 8725 §3.1). ``Ed25519`` (RFC 9864) and its older name ``EdDSA``
name the same algorithm for an Ed25519 key, so such a key accepts both names.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from txtoken.errors import ConfigurationError

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "Algorithm",
    "KeySet",
    "PendingKey",
    "RetiredKey",
    "SigningKey",
    "VerificationKey",
    "key_index",
    "load_jwks",
    "thumbprint",
]

Algorithm: TypeAlias = Literal["ES256", "Ed25519", "EdDSA", "RS256", "PS256"]
#: The asymmetric algorithms txtoken signs and verifies with. ``none`` and every ``HS*`` are never accepted.
ALGORITHMS: tuple[Algorithm, ...] = ("ES256", "Ed25519", "EdDSA", "RS256", "PS256")
DEFAULT_ALGORITHM: Algorithm = "ES256"

PublicKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

_KEY_TYPES = (
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    rsa.RSAPublicKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    rsa.RSAPrivateKey,
)
_PRIVATE_KEY_TYPES = (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)
_MIN_RSA_BITS = 2048
_PUBLIC_MEMBERS = frozenset({"kty", "crv", "x", "y", "n", "e", "kid", "alg", "use"})
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_PSS_SHA256 = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
_SHA256 = hashes.SHA256()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 JWK SHA-256 thumbprint, base64url-encoded: txtoken's ``kid``."""
    try:
        members = _THUMBPRINT_MEMBERS[jwk["kty"]]
        canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    except KeyError as exc:
        raise ConfigurationError(f"JWK lacks a member needed for its thumbprint: {exc}") from None
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def _algorithm_for(key: PublicKey, alg: str | None) -> Algorithm:
    """Check that ``alg`` fits the key type (or infer it) and that the key is strong enough."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ConfigurationError(f"EC keys must use P-256 for ES256, not {key.curve.name}")
        allowed: tuple[Algorithm, ...] = ("ES256",)
    elif isinstance(key, ed25519.Ed25519PublicKey):
        allowed = ("Ed25519", "EdDSA")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ConfigurationError(f"RSA keys must have at least {_MIN_RSA_BITS} bits, not {key.key_size}")
        allowed = ("RS256", "PS256")
    else:
        raise ConfigurationError(f"unsupported key type {type(key).__name__}")
    if alg is None:
        return allowed[0]
    for candidate in allowed:
        if candidate == alg:
            return candidate
    raise ConfigurationError(f"algorithm {alg!r} does not fit a {type(key).__name__} (allowed: {', '.join(allowed)})")


def _verifier(key: PublicKey, alg: Algorithm) -> Callable[[bytes, bytes], None]:
    """A function ``(signing_input, signature)`` that raises ``InvalidSignature`` unless the JWS signature is good."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        ec_key = key

        def verify_es256(data: bytes, signature: bytes) -> None:
            # JWS carries ECDSA as raw r || s (RFC 7518 §3.4); cryptography wants DER.
            if len(signature) != 64:
                raise InvalidSignature
            r = int.from_bytes(signature[:32], "big")
            s = int.from_bytes(signature[32:], "big")
            ec_key.verify(encode_dss_signature(r, s), data, _ECDSA_SHA256)

        return verify_es256
    if isinstance(key, ed25519.Ed25519PublicKey):
        ed_key = key

        def verify_ed25519(data: bytes, signature: bytes) -> None:
            ed_key.verify(signature, data)

        return verify_ed25519
    rsa_key = key
    pad: padding.AsymmetricPadding = padding.PKCS1v15() if alg == "RS256" else _PSS_SHA256

    def verify_rsa(data: bytes, signature: bytes) -> None:
        rsa_key.verify(signature, data, pad, _SHA256)

    return verify_rsa


def _to_jwk(key: PublicKey | PrivateKey) -> dict[str, Any]:
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return ECAlgorithm.to_jwk(key, as_dict=True)
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return OKPAlgorithm.to_jwk(key, as_dict=True)
    return RSAAlgorithm.to_jwk(key, as_dict=True)


def _public_jwk(key: PublicKey, kid: str, alg: str) -> dict[str, Any]:
    jwk = {name: value for name, value in _to_jwk(key).items() if name in _PUBLIC_MEMBERS}
    jwk.update(kid=kid, alg=alg, use="sig")
    return jwk


def _load_jwk(jwk: Mapping[str, Any]) -> PublicKey | PrivateKey:
    loaders = {"EC": ECAlgorithm.from_jwk, "OKP": OKPAlgorithm.from_jwk, "RSA": RSAAlgorithm.from_jwk}
    kty = jwk.get("kty")
    loader = loaders.get(kty) if isinstance(kty, str) else None
    if loader is None:
        raise ConfigurationError(f"unsupported JWK key type {kty!r}")
    try:
        loaded = loader(dict(jwk))
    except Exception as exc:
        raise ConfigurationError(f"invalid JWK: {type(exc).__name__}") from None
    if not isinstance(loaded, _KEY_TYPES):
        raise ConfigurationError(f"unsupported JWK key type {type(loaded).__name__}")
    return loaded


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key bound to one algorithm and a ``kid``."""

    kid: str
    alg: Algorithm
    public_key: PublicKey = field(repr=False)
    _verify: Callable[[bytes, bytes], None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "alg", _algorithm_for(self.public_key, self.alg))
        object.__setattr__(self, "_verify", _verifier(self.public_key, self.alg))

    @classmethod
    def from_public_key(cls, public_key: PublicKey, alg: str | None = None, kid: str | None = None) -> VerificationKey:
        """Bind a public key to its algorithm (inferred when not given) and ``kid`` (RFC 7638 thumbprint by default)."""
        algorithm = _algorithm_for(public_key, alg)
        return cls(kid or thumbprint(_public_jwk(public_key, "", algorithm)), algorithm, public_key)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> VerificationKey:
        """Import a JWK (private members, if any, are dropped); ``alg`` is inferred when absent (RSA: RS256)."""
        loaded = _load_jwk(jwk)
        public = loaded.public_key() if isinstance(loaded, _PRIVATE_KEY_TYPES) else loaded
        alg = jwk.get("alg")
        if alg is not None and not isinstance(alg, str):
            raise ConfigurationError("JWK 'alg' must be a string")
        kid = jwk.get("kid")
        if kid is not None and (not isinstance(kid, str) or not kid):
            raise ConfigurationError("JWK 'kid' must be a non-empty string")
        return cls.from_public_key(public, alg, kid)

    def accepts(self, alg: str) -> bool:
        """Whether a JWS with header ``alg`` may be verified with this key."""
        return alg == self.alg or (self.alg in ("Ed25519", "EdDSA") and alg in ("Ed25519", "EdDSA"))

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        """Check a raw JWS signature over ``signing_input``."""
        try:
            self._verify(signing_input, signature)
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_jwk(self) -> dict[str, Any]:
        """The public JWK (public members, ``kid``, ``alg``, ``use``)."""
        return _public_jwk(self.public_key, self.kid, self.alg)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key bound to one algorithm; its ``kid`` is the RFC 7638 thumbprint of the public key."""

    alg: Algorithm
    private_key: PrivateKey = field(repr=False)
    kid: str = ""

    def __post_init__(self) -> None:
        public = self.private_key.public_key()
        object.__setattr__(self, "alg", _algorithm_for(public, self.alg))
        if not self.kid:
            object.__setattr__(self, "kid", thumbprint(_public_jwk(public, "", self.alg)))

    @classmethod
    def generate(cls, alg: Algorithm = DEFAULT_ALGORITHM) -> SigningKey:
        """A fresh key for ``alg`` (P-256, Ed25519 or RSA-3072)."""
        private: PrivateKey
        if alg == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        elif alg in ("Ed25519", "EdDSA"):
            private = ed25519.Ed25519PrivateKey.generate()
        elif alg in ("RS256", "PS256"):
            private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        else:
            raise ConfigurationError(f"unsupported algorithm {alg!r}")
        return cls(alg, private)

    @classmethod
    def from_pem(cls, data: bytes | str, alg: str | None = None, password: bytes | None = None) -> SigningKey:
        """Load a PEM private key; ``alg`` is inferred from the key type when not given (RSA: RS256)."""
        raw = data.encode("ascii") if isinstance(data, str) else data
        try:
            private = serialization.load_pem_private_key(raw, password=password)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"cannot load PEM private key: {exc}") from None
        if not isinstance(private, _PRIVATE_KEY_TYPES):
            raise ConfigurationError(f"unsupported private key type {type(private).__name__}")
        return cls(_algorithm_for(private.public_key(), alg), private)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> SigningKey:
        """Load a private JWK; ``kid`` is kept when present."""
        loaded = _load_jwk(jwk)
        if not isinstance(loaded, _PRIVATE_KEY_TYPES):
            raise ConfigurationError("JWK holds no private key")
        alg = jwk.get("alg")
        kid = jwk.get("kid")
        return cls(
            _algorithm_for(loaded.public_key(), alg if isinstance(alg, str) else None),
            loaded,
            kid if isinstance(kid, str) else "",
        )

    def sign(self, signing_input: bytes) -> bytes:
        """The raw JWS signature over ``signing_input`` (ECDSA as ``r || s``, RFC 7518 §3.4)."""
        private = self.private_key
        if isinstance(private, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(private.sign(signing_input, _ECDSA_SHA256))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        if isinstance(private, ed25519.Ed25519PrivateKey):
            return private.sign(signing_input)
        pad: padding.AsymmetricPadding = padding.PKCS1v15() if self.alg == "RS256" else _PSS_SHA256
        return private.sign(signing_input, pad, _SHA256)

    @property
    def verification_key(self) -> VerificationKey:
        """The public half, with the same ``kid`` and ``alg``."""
        return VerificationKey(self.kid, self.alg, self.private_key.public_key())

    def to_private_jwk(self) -> dict[str, Any]:
        """The private JWK (for a key file; never publish it)."""
        jwk = _to_jwk(self.private_key)
        jwk.update(kid=self.kid, alg=self.alg, use="sig")
        return jwk

    def to_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


@dataclass(frozen=True, slots=True)
class RetiredKey:
    """A previous signing key, still published for verification until ``retire_at`` (None: until removed)."""

    key: VerificationKey
    retire_at: int | None = None


@dataclass(frozen=True, slots=True)
class PendingKey:
    """The next signing key, published ahead of use: it signs from ``activate_at`` on, and the key it replaces
    stays published until ``retire_previous_at`` (both NumericDates)."""

    key: SigningKey
    activate_at: int
    retire_previous_at: int


def _numeric_date(jwk: Mapping[str, Any], name: str) -> int | None:
    value = jwk.get(name)
    if value is not None and type(value) is not int:
        raise ConfigurationError(f"{name!r} must be an integer NumericDate")
    return value


@dataclass(frozen=True, slots=True)
class KeySet:
    """One active signing key, the previous keys still published, and at most one pending key (rotation with
    pre-publication and overlap).

    Stored as a JWKS file: the first key is the active one (private JWK); a pending key is a private JWK with
    ``activate_at`` (the active key then carries ``retire_at``, when it leaves the JWKS); the others are previous
    keys (public JWKs, each with an optional ``retire_at`` NumericDate after which it is no longer published).
    Which key signs at a given moment follows from these timestamps alone (:meth:`at`), so every process reading the
    file agrees on it, whenever it read the file.
    """

    active: SigningKey
    previous: tuple[RetiredKey, ...] = ()
    pending: PendingKey | None = None

    @classmethod
    def generate(cls, alg: Algorithm = DEFAULT_ALGORITHM) -> KeySet:
        return cls(SigningKey.generate(alg))

    def at(self, now: float | None = None) -> KeySet:
        """This key set as it stands at ``now``: the pending key active once its time has come, retired keys gone."""
        at = time.time() if now is None else now
        active, previous, pending = self.active, self.previous, self.pending
        if pending is not None and at >= pending.activate_at:
            previous = (RetiredKey(active.verification_key, pending.retire_previous_at), *previous)
            active, pending = pending.key, None
        kept = tuple(p for p in previous if p.retire_at is None or p.retire_at > at)
        if active is self.active and len(kept) == len(self.previous):
            return self
        return KeySet(active, kept, pending)

    def next_change(self, now: float) -> int | None:
        """The first time after ``now`` at which :meth:`at` gives another key set (None: never)."""
        times = [p.retire_at for p in self.previous if p.retire_at is not None]
        if self.pending is not None:
            times += (self.pending.activate_at, self.pending.retire_previous_at)
        later = [t for t in times if t > now]
        return min(later) if later else None

    def rotate(self, new_key: SigningKey, *, overlap: int, prepublish: int = 0, now: float | None = None) -> KeySet:
        """A key set in which ``new_key`` signs from ``now + prepublish`` on (published from now), and the key it
        replaces stays published for ``overlap`` seconds after that.

        With ``prepublish`` 0 the new key signs at once. A key still pending is dropped: it never signed anything.
        """
        if overlap < 0 or prepublish < 0:
            raise ConfigurationError("overlap and prepublish must not be negative")
        exact = time.time() if now is None else now
        at = int(exact)
        current = self.at(at)
        if prepublish == 0:
            return KeySet(new_key, (RetiredKey(current.active.verification_key, at + overlap), *current.previous))
        activate_at = math.ceil(exact) + prepublish  # published for prepublish seconds at least
        return KeySet(current.active, current.previous, PendingKey(new_key, activate_at, activate_at + overlap))

    def verification_keys(self, now: float | None = None) -> list[VerificationKey]:
        """The keys a verifier should accept now: the active one, a pending one, previous ones not yet retired."""
        current = self.at(now)
        keys = [current.active.verification_key]
        if current.pending is not None:
            keys.append(current.pending.key.verification_key)
        keys.extend(p.key for p in current.previous)
        return keys

    def public_jwks(self, now: float | None = None) -> dict[str, Any]:
        """The JWKS to publish: public members only."""
        return {"keys": [key.to_jwk() for key in self.verification_keys(now)]}

    def to_private_jwks(self) -> dict[str, Any]:
        keys: list[dict[str, Any]] = [self.active.to_private_jwk()]
        if self.pending is not None:
            keys[0]["retire_at"] = self.pending.retire_previous_at
            keys.append({**self.pending.key.to_private_jwk(), "activate_at": self.pending.activate_at})
        for p in self.previous:
            jwk = p.key.to_jwk()
            if p.retire_at is not None:
                jwk["retire_at"] = p.retire_at
            keys.append(jwk)
        return {"keys": keys}

    @classmethod
    def from_private_jwks(cls, data: Mapping[str, Any]) -> KeySet:
        keys = data.get("keys")
        if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
            raise ConfigurationError("a key set file needs a non-empty 'keys' list of JWKs")
        active = SigningKey.from_jwk(keys[0])
        active_retire_at = _numeric_date(keys[0], "retire_at")
        pending: PendingKey | None = None
        previous = []
        for jwk in keys[1:]:
            activate_at = _numeric_date(jwk, "activate_at")
            if activate_at is None:
                previous.append(RetiredKey(VerificationKey.from_jwk(jwk), _numeric_date(jwk, "retire_at")))
                continue
            if pending is not None:
                raise ConfigurationError("a key set holds at most one key with 'activate_at'")
            if active_retire_at is None or active_retire_at < activate_at:
                raise ConfigurationError("the active key's 'retire_at' must not precede the next key's activate_at")
            pending = PendingKey(SigningKey.from_jwk(jwk), activate_at, active_retire_at)
        if active_retire_at is not None and pending is None:
            raise ConfigurationError("the active key has a 'retire_at' but no key with 'activate_at' replaces it")
        return cls(active, tuple(previous), pending)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key set file atomically, readable by the owner only."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.to_private_jwks(), fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KeySet:
        """Load a key set file (a private JWKS) or a single PEM private key."""
        return cls.parse(Path(path).read_bytes(), origin=str(path))

    @classmethod
    def parse(cls, raw: bytes, *, origin: str = "key set") -> KeySet:
        """A key set from the bytes of a key set file (a private JWKS) or a single PEM private key."""
        if raw.lstrip().startswith(b"-----BEGIN"):
            return cls(SigningKey.from_pem(raw))
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise ConfigurationError(f"{origin}: not JSON or PEM") from None
        if isinstance(data, dict) and "kty" in data:
            return cls(SigningKey.from_jwk(data))
        if not isinstance(data, dict):
            raise ConfigurationError(f"{origin}: expected a JWKS object")
        return cls.from_private_jwks(data)


def load_jwks(data: Mapping[str, Any] | str | bytes) -> list[VerificationKey]:
    """Import the signature keys of a JWKS document.

    Keys for another use (``use`` other than ``sig``), of an unsupported type, or with an algorithm outside
    :data:`ALGORITHMS` are skipped, so a JWKS that also lists other keys still works. A document that is not a JWKS
    raises :class:`ConfigurationError`.
    """
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser's stack
            raise ConfigurationError("JWKS is not valid JSON") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
        raise ConfigurationError("a JWKS needs a 'keys' list")
    keys = []
    for jwk in data["keys"]:
        if not isinstance(jwk, Mapping) or jwk.get("use", "sig") != "sig":
            continue
        if jwk.get("alg") is not None and jwk.get("alg") not in ALGORITHMS:
            continue
        try:
            keys.append(VerificationKey.from_jwk(jwk))
        except ConfigurationError:
            continue
    return keys


def key_index(keys: Iterable[VerificationKey]) -> dict[str, VerificationKey]:
    """Keys by ``kid``; a ``kid`` listed twice is refused, since it would make the key choice ambiguous."""
    index: dict[str, VerificationKey] = {}
    for key in keys:
        if key.kid in index and index[key.kid] != key:
            raise ConfigurationError(f"two different keys share the kid {key.kid!r}")
        index[key.kid] = key
    return index
