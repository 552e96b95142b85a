"""WIT/WPT interoperability with an independent JOSE stack (joserfc), both ways."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet as JoseKeySet, OKPKey

from txtoken import KeySet, load_jwks
from txtoken.replay import MemoryReplayStore
from txtoken.wimse import CallerVerifier, WitIssuer, WitVerifier, WptVerifier, create_wpt

from .conftest import TARGET, TRUST_DOMAIN, WORKLOAD

TXN_TOKEN = "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"


def _hash(value: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(value.encode("ascii")).digest()).rstrip(b"=").decode()


@pytest.mark.parametrize("proof_alg", ["ES256", "Ed25519"])
def test_a_joserfc_wit_and_wpt_are_accepted_by_txtoken(proof_alg: str) -> None:
    anchor = ECKey.generate_key("P-256", parameters={"kid": "anchor-1", "alg": "ES256"})
    proof = ECKey.generate_key("P-256") if proof_alg == "ES256" else OKPKey.generate_key("Ed25519")
    now = int(time.time())
    cnf = {**proof.as_dict(private=False), "alg": proof_alg}
    wit = jwt.encode(
        {"alg": "ES256", "typ": "wit+jwt", "kid": "anchor-1"},
        {"sub": WORKLOAD, "exp": now + 600, "iat": now, "cnf": {"jwk": cnf}},
        anchor,
        algorithms=["ES256"],
    )
    wpt = jwt.encode(
        {"alg": proof_alg, "typ": "wpt+jwt"},
        {"aud": TARGET, "exp": now + 30, "jti": "j-1", "wth": _hash(wit), "tth": _hash(TXN_TOKEN)},
        proof,
        algorithms=[proof_alg],
    )
    anchors = load_jwks({"keys": [anchor.as_dict(private=False)]})
    verifier = CallerVerifier(WitVerifier(anchors, trust_domain=TRUST_DOMAIN), WptVerifier())
    caller = verifier.verify(wit=wit, wpt=wpt, audience=TARGET, txn_token=TXN_TOKEN)
    assert caller.workload == WORKLOAD
    assert caller.wpt.jti == "j-1"


def test_a_txtoken_wit_and_wpt_are_accepted_by_joserfc() -> None:
    wit_keys = KeySet.generate("ES256")
    wit, key = WitIssuer(wit_keys, trust_domain=TRUST_DOMAIN).issue_with_new_key(WORKLOAD, "ES256")
    wpt = create_wpt(key, wit=wit, audience=TARGET, txn_token=TXN_TOKEN)

    decoded_wit = jwt.decode(wit, JoseKeySet.import_key_set(wit_keys.public_jwks()), algorithms=["ES256"])  # type: ignore[arg-type]
    assert decoded_wit.header["typ"] == "wit+jwt"
    jwt.JWTClaimsRegistry(sub={"essential": True, "value": WORKLOAD}, exp={"essential": True}).validate(
        decoded_wit.claims
    )
    cnf_key = ECKey.import_key(decoded_wit.claims["cnf"]["jwk"])
    decoded_wpt = jwt.decode(wpt, cnf_key, algorithms=[decoded_wit.claims["cnf"]["jwk"]["alg"]])
    assert decoded_wpt.header["typ"] == "wpt+jwt"
    jwt.JWTClaimsRegistry(aud={"essential": True, "value": TARGET}, exp={"essential": True}).validate(
        decoded_wpt.claims
    )
    assert decoded_wpt.claims["wth"] == _hash(wit)
    assert decoded_wpt.claims["tth"] == _hash(TXN_TOKEN)
    assert decoded_wpt.claims["exp"] - decoded_wpt.claims["iat"] <= 60
    # and txtoken itself accepts what joserfc just checked
    verifier = CallerVerifier(
        WitVerifier(wit_keys, trust_domain=TRUST_DOMAIN), WptVerifier(replay_store=MemoryReplayStore())
    )
    assert verifier.verify(wit=wit, wpt=wpt, audience=TARGET, txn_token=TXN_TOKEN).workload == WORKLOAD
