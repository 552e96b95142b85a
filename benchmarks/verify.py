"""Txn-Token verification rate against the raw signature check, in one run.

For ES256, EdDSA and RS256 this measures, on the same token:

- ``raw``: ``cryptography``'s signature verify of the token's signature alone, already base64-decoded: the ceiling.
  For ES256 it includes turning the JWS ``r || s`` signature into the DER form ``cryptography`` takes, since no
  verifier using ``cryptography`` can skip that step;
- ``txtoken``: ``TxnTokenVerifier.verify`` with the cache off (every check of the verifier);
- ``pyjwt``: ``jwt.decode`` with the key object, audience and required claims;
- ``cached``: ``TxnTokenVerifier.verify`` with the cache on (a token seen again), given a new string decoded from
  the token's bytes each time, as a server reading the header has it (a reused string would carry its cached hash).

With ``--sign``, signing instead, on the same claims: ``raw`` is ``cryptography``'s signature alone (for ES256 with
the DER to ``r || s`` step), ``txtoken`` is ``encode_jws`` (the compact JWS built around ``SigningKey.sign``) and
``pyjwt`` is ``jwt.encode`` with the key object and the same header, the way ``encode_jws`` worked before.

Machines here are shared and noisy, so the functions run interleaved in rounds and each ratio is the median over
rounds of (rate / raw rate in the same round).

    .venv/bin/python benchmarks/verify.py [--rounds 15] [--seconds 0.2] [--sign]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from txtoken import KeySet, TxnTokenMinter, TxnTokenVerifier
from txtoken.claims import TXN_TOKEN_TYP
from txtoken.jws import b64url_decode
from txtoken.keys import Algorithm
from txtoken.mint import encode_jws

TRUST_DOMAIN = "bench.example"
CASES: tuple[Algorithm, ...] = ("ES256", "EdDSA", "RS256")


def _token(keys: KeySet) -> str:
    return TxnTokenMinter(keys, trust_domain=TRUST_DOMAIN).mint(
        sub="d084sdrt234fsaw34tr23t",
        scope="trade.stocks",
        req_wl="spiffe://bench.example/gateway",
        rctx={"req_ip": "69.151.72.123", "authn": "face"},
        tctx={"action": "BUY", "ticker": "MSFT", "quantity": "100", "customer_type": {"geo": "US", "level": "VIP"}},
    )


def _raw_verify(keys: KeySet, token: str) -> Callable[[], object]:
    header, payload, signature_segment = token.split(".")
    data = f"{header}.{payload}".encode("ascii")
    signature = b64url_decode(signature_segment)
    public = keys.active.verification_key.public_key
    if isinstance(public, ec.EllipticCurvePublicKey):
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        algorithm = ec.ECDSA(hashes.SHA256())
        return lambda: public.verify(encode_dss_signature(r, s), data, algorithm)
    if isinstance(public, ed25519.Ed25519PublicKey):
        return lambda: public.verify(signature, data)
    assert isinstance(public, rsa.RSAPublicKey)
    pad, digest = padding.PKCS1v15(), hashes.SHA256()
    return lambda: public.verify(signature, data, pad, digest)


def _functions(alg: Algorithm) -> dict[str, Callable[[], object]]:
    keys = KeySet.generate(alg)
    token = _token(keys)
    uncached = TxnTokenVerifier(keys, trust_domain=TRUST_DOMAIN, cache_size=0)
    cached = TxnTokenVerifier(keys, trust_domain=TRUST_DOMAIN)
    header = token.encode("ascii")
    public = keys.active.verification_key.public_key
    options: jwt.types.Options = {"require": ["iat", "exp", "aud", "txn", "sub", "scope", "req_wl"]}

    def pyjwt_decode() -> object:
        return jwt.decode(token, public, algorithms=[alg], audience=TRUST_DOMAIN, options=options, leeway=30)

    functions: dict[str, Callable[[], object]] = {
        "raw": _raw_verify(keys, token),
        "txtoken": lambda: uncached.verify(token),
        "pyjwt": pyjwt_decode,
        "cached": lambda: cached.verify(header.decode("ascii")),
    }
    for check in functions.values():
        check()  # every function must succeed before it is timed
    return functions


def _signers(alg: Algorithm) -> dict[str, Callable[[], object]]:
    keys = KeySet.generate(alg)
    key = keys.active
    claims = jwt.decode(_token(keys), options={"verify_signature": False})
    header = {"typ": TXN_TOKEN_TYP, "kid": key.kid}
    data = _token(keys).rsplit(".", 1)[0].encode("ascii")
    pyjwt_alg = "EdDSA" if alg in ("Ed25519", "EdDSA") else alg
    return {
        "raw": lambda: key.sign(data),
        "txtoken": lambda: encode_jws(claims, key, typ=TXN_TOKEN_TYP),
        "pyjwt": lambda: jwt.encode(claims, key.private_key, algorithm=pyjwt_alg, headers=header),
    }


def _rate(function: Callable[[], object], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            function()
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def interleaved(
    functions: dict[str, Callable[[], object]], rounds: int, seconds: float, *, baseline: str
) -> dict[str, tuple[float, float]]:
    """Per function: (median rate per second, median ratio to ``baseline`` in the same round), rounds rotated."""
    names = list(functions)
    rates: dict[str, list[float]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in names}
    for round_no in range(rounds):
        order = names[round_no % len(names) :] + names[: round_no % len(names)]
        measured = {name: _rate(functions[name], seconds) for name in order}
        for name in names:
            rates[name].append(measured[name])
            ratios[name].append(measured[name] / measured[baseline])
    return {name: (statistics.median(rates[name]), statistics.median(ratios[name])) for name in names}


def run(rounds: int, seconds: float, sign: bool = False) -> dict[str, dict[str, tuple[float, float]]]:
    """Per algorithm and function: (median rate per second, median ratio to raw)."""
    return {
        alg: interleaved(_signers(alg) if sign else _functions(alg), rounds, seconds, baseline="raw") for alg in CASES
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=0.2, help="per function per round")
    parser.add_argument("--sign", action="store_true", help="measure signing instead of verification")
    args = parser.parse_args()
    results = run(args.rounds, args.seconds, args.sign)
    print(f"{'alg':<7} {'function':<9} {'signs/s' if args.sign else 'verifies/s':>11} {'ratio to raw':>13}")
    for alg, table in results.items():
        for name, (rate, ratio) in table.items():
            print(f"{alg:<7} {name:<9} {rate:>11,.0f} {ratio:>13.2f}")


if __name__ == "__main__":
    main()
