"""txtoken.testing.TxnTokenKit: real tokens with defaults and overrides, the tokens a verifier refuses, carriers."""

from __future__ import annotations

import pytest

from txtoken import KeySet, use_transaction
from txtoken.errors import TxTokenError
from txtoken.jws import parse_jws
from txtoken.keys import ALGORITHMS
from txtoken.testing import DEFAULT_TRUST_DOMAIN, TxnTokenKit

from ..core.conftest import NOW, FakeClock


def refusal(kit: TxnTokenKit, token: str) -> str:
    with pytest.raises(TxTokenError) as raised:
        kit.verifier.verify(token)
    return raised.value.code


def test_defaults_make_a_token_the_kits_verifier_accepts() -> None:
    kit = TxnTokenKit()
    txn = kit.verified()
    assert (txn.sub, txn.scope, txn.req_wl) == ("user-1", "test", "spiffe://test.example/test-client")
    assert txn.claims.aud == kit.trust_domain == DEFAULT_TRUST_DOMAIN
    assert txn.claims.exp - txn.claims.iat == kit.lifetime == 60
    assert txn.tctx == {} and txn.claims.iss is None
    assert kit.verified().txn != txn.txn  # a new transaction id per token


def test_any_claim_is_overridden_and_none_leaves_one_out() -> None:
    kit = TxnTokenKit(trust_domain="shop.example", issuer="https://tts.shop.example")
    txn = kit.verified(sub="bob", scope="orders.read orders.write", tctx={"order": 7}, rctx={"ip": "192.0.2.1"}, x=1)
    assert (txn.sub, txn.scope) == ("bob", "orders.read orders.write")
    assert (txn.tctx, txn.rctx) == ({"order": 7}, {"ip": "192.0.2.1"})
    assert txn.claims.iss == "https://tts.shop.example" and txn.claims.model_extra == {"x": 1}
    assert "rctx" not in kit.claims() and "tctx" not in kit.claims()
    assert "txn" not in kit.claims(txn=None)
    assert kit.claims(iat=NOW)["exp"] == NOW + 60  # exp follows an overridden iat
    assert kit.claims(iat=NOW, exp=NOW + 5)["exp"] == NOW + 5


def test_the_kit_mints_what_a_verifier_must_refuse() -> None:
    kit = TxnTokenKit()
    now = int(kit.clock())
    assert refusal(kit, kit.mint(iat=now - 600, exp=now - 300)) == "token_expired"
    assert refusal(kit, kit.mint(aud="other.example")) == "aud_invalid"
    assert refusal(kit, kit.mint(exp=now + 3600)) == "lifetime_too_long"
    assert refusal(kit, kit.mint(sub=None)) == "claim_invalid"
    assert refusal(kit, kit.mint(iat=str(now))) == "claim_invalid"
    assert refusal(kit, TxnTokenKit().mint()) == "kid_unknown"  # another kit's key


def test_one_clock_drives_issuing_and_verifying() -> None:
    clock = FakeClock()
    kit = TxnTokenKit(clock=clock)
    token = kit.mint()
    assert kit.claims()["iat"] == NOW
    clock.advance(60 + 30)  # lifetime and the verifier's leeway
    assert refusal(kit, token) == "token_expired"


def test_alg_and_keys() -> None:
    keys = KeySet.generate("Ed25519")
    kit = TxnTokenKit(keys=keys)
    assert kit.keys is keys
    header = parse_jws(kit.mint(), algorithms=frozenset(ALGORITHMS)).header
    assert (header.alg, header.kid, header.media_type) == ("Ed25519", keys.active.kid, "txntoken+jwt")
    eddsa = TxnTokenKit(alg="EdDSA")
    assert parse_jws(eddsa.mint(), algorithms=frozenset(ALGORITHMS)).header.alg == "EdDSA"
    assert eddsa.verified().sub == "user-1"


def test_headers_and_grpc_metadata_carry_one_token() -> None:
    kit = TxnTokenKit()
    headers = kit.headers(sub="carol")
    assert list(headers) == ["Txn-Token"]
    assert kit.verifier.verify(headers["Txn-Token"]).sub == "carol"
    token = kit.mint()
    assert kit.headers(token) == {"Txn-Token": token}
    assert kit.grpc_metadata(token) == (("txn-token", token),)
    ((key, value),) = kit.grpc_metadata(scope="stock.reserve")
    assert key == "txn-token" and kit.verifier.verify(value).scope == "stock.reserve"


def test_bound_credentials_are_built_from_the_token_the_request_carries() -> None:
    kit = TxnTokenKit()
    seen: list[str] = []

    def proof(token: str) -> dict[str, str]:  # what a WIT/WPT pair plugs in: its proof hashes the Txn-Token
        seen.append(token)
        return {"Workload-Proof-Token": f"proof-for-{len(token)}"}

    headers = kit.headers(bound=proof, scope="a")
    assert headers == {"Txn-Token": seen[0], "Workload-Proof-Token": f"proof-for-{len(seen[0])}"}
    metadata = kit.grpc_metadata(seen[0], bound=proof)
    assert metadata == (("txn-token", seen[0]), ("workload-proof-token", f"proof-for-{len(seen[0])}"))


def test_verified_serves_code_that_reads_the_current_transaction() -> None:
    kit = TxnTokenKit()
    with use_transaction(kit.verified(tctx={"order": 7})) as txn:
        assert txn is not None and txn.tctx["order"] == 7
