"""Interoperability with Node jose (https://github.com/panva/jose), in both directions, for every algorithm: the
JOSE stack of most JavaScript services. ``tests/interop/node`` pins it; ``.ci/run`` installs it with ``npm ci``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from txtoken import KeySet, SigningKey, TxnTokenMinter, load_jwks
from txtoken.errors import UnknownKey

from .conftest import ALL_ALGS, NOW, TRUST_DOMAIN, FakeClock, claims, rejected, verifier

NODE_DIR = Path(__file__).resolve().parents[1] / "interop" / "node"


@pytest.fixture(scope="module")
def jose() -> Any:
    """Runs one request through ``jose_tool.mjs`` (a new node process each time)."""
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "jose").is_dir():
        pytest.skip(f"no Node jose here: `npm ci --prefix {NODE_DIR}` (.ci/run does it) to run these tests")

    def run(request: dict[str, Any]) -> dict[str, Any]:
        done = subprocess.run(
            [node, str(NODE_DIR / "jose_tool.mjs")],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    return run


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_txtoken_token_verifies_with_node_jose(jose: Any, signing_keys: dict[str, SigningKey], alg: str) -> None:
    keys = KeySet(SigningKey.generate("ES256")).rotate(signing_keys[alg], overlap=600)  # two keys published
    tok = TxnTokenMinter(keys, trust_domain=TRUST_DOMAIN, clock=FakeClock()).mint(
        sub="user-42", scope="trade.stocks", req_wl="gateway", tctx={"ticker": "MSFT"}
    )
    answer = jose(
        {
            "op": "verify",
            "token": tok,
            "jwks": keys.public_jwks(),
            "audience": TRUST_DOMAIN,
            "typ": "txntoken+jwt",
            "now": NOW,
        }
    )
    assert answer["header"] == {"alg": alg, "typ": "txntoken+jwt", "kid": signing_keys[alg].kid}
    assert (answer["payload"]["sub"], answer["payload"]["tctx"]) == ("user-42", {"ticker": "MSFT"})


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_node_jose_token_with_aud_array_fractional_dates_and_no_kid_verifies_with_txtoken(
    jose: Any, signing_keys: dict[str, SigningKey], alg: str
) -> None:
    """issue 10: valid JWTs Node jose makes and accepts were refused: ``aud`` as a one-member array, non-integer
    NumericDates, no ``kid`` (the key source holds one key for the alg)."""
    key = signing_keys[alg]
    payload = claims(aud=[TRUST_DOMAIN], iat=NOW - 0.5, exp=NOW + 119.5)
    header = {"alg": alg, "typ": "txntoken+jwt"}
    tok = jose({"op": "sign", "jwk": key.to_private_jwk(), "header": header, "payload": payload})["token"]
    # Node jose accepts what it made (with a JWKS of the one key, no kid needed).
    jwks = {"keys": [key.verification_key.to_jwk()]}
    accepted = jose(
        {"op": "verify", "token": tok, "jwks": jwks, "audience": TRUST_DOMAIN, "typ": "txntoken+jwt", "now": NOW}
    )
    assert accepted["payload"] == payload
    other = SigningKey.generate("ES256" if alg != "ES256" else "Ed25519")
    verified = verifier(load_jwks({"keys": [*jwks["keys"], other.verification_key.to_jwk()]})).verify(tok)
    assert (verified.kid, verified.claims.aud, verified.claims.exp) == (key.kid, TRUST_DOMAIN, NOW + 119.5)


def test_both_refuse_a_token_without_kid_when_two_keys_serve_its_alg(jose: Any) -> None:
    one, two = SigningKey.generate("ES256"), SigningKey.generate("ES256")
    header = {"alg": "ES256", "typ": "txntoken+jwt"}
    tok = jose({"op": "sign", "jwk": one.to_private_jwk(), "header": header, "payload": claims()})["token"]
    jwks = {"keys": [one.verification_key.to_jwk(), two.verification_key.to_jwk()]}
    answer = jose(
        {"op": "verify", "token": tok, "jwks": jwks, "audience": TRUST_DOMAIN, "typ": "txntoken+jwt", "now": NOW}
    )
    assert answer == {"error": "ERR_JWKS_MULTIPLE_MATCHING_KEYS"}
    rejected(verifier(load_jwks(jwks)), tok, UnknownKey, "kid_unknown")
