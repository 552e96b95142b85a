"""The WIT file source: a WIT and its key written by an agent, re-read on rotation, refused when they do not match."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from txtoken import KeySet, SigningKey
from txtoken.credentials import WitFileSource, WorkloadIdentitySource
from txtoken.errors import CredentialUnavailable
from txtoken.wimse import WitIssuer, WitVerifier, WptVerifier, create_wpt

TD = "shop.example"
WORKLOAD = "spiffe://shop.example/ns/shop/sa/inventory"


@pytest.fixture(scope="module")
def wit_keys() -> KeySet:
    return KeySet.generate("ES256")


def _write(path: Path, text: str, *, age: float = 60) -> None:
    """Write as an agent does (replace by rename), back-dated so only the stat signature reveals the change."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n")
    then = time.time() - age
    os.utime(tmp, (then, then))
    os.replace(tmp, path)


def _issue(wit_keys: KeySet, tmp_path: Path, alg: str = "ES256", *, pem: bool = False) -> tuple[str, SigningKey]:
    wit, key = WitIssuer(wit_keys, trust_domain=TD).issue_with_new_key(WORKLOAD, alg)  # type: ignore[arg-type]
    _write(tmp_path / "wit.jwt", wit)
    _write(tmp_path / "key", key.to_pem().decode() if pem else json.dumps(key.to_private_jwk()))
    return wit, key


def test_reads_the_wit_and_its_key_and_the_pair_signs_accepted_wpts(wit_keys: KeySet, tmp_path: Path) -> None:
    wit, _ = _issue(wit_keys, tmp_path)
    source = WitFileSource(str(tmp_path / "wit.jwt"), str(tmp_path / "key"))
    assert isinstance(source, WorkloadIdentitySource)
    identity = source.get()
    assert identity.wit == wit and identity.workload == WORKLOAD
    assert identity.expires_at is not None and identity.expires_at > time.time() + 3000
    assert wit not in repr(identity)
    wpt = create_wpt(identity.key, wit=identity.wit, audience="https://a.shop.example/x")
    verified = WitVerifier(wit_keys, trust_domain=TD).verify(identity.wit)
    assert WptVerifier().verify(wpt, wit=verified, audience="https://a.shop.example/x").jti


def test_a_pem_key_is_bound_to_the_wits_cnf_alg(wit_keys: KeySet, tmp_path: Path) -> None:
    _issue(wit_keys, tmp_path, "EdDSA", pem=True)  # a PEM Ed25519 key alone would be "Ed25519"
    assert WitFileSource(str(tmp_path / "wit.jwt"), str(tmp_path / "key")).get().key.alg == "EdDSA"


@pytest.mark.anyio
async def test_rotation_of_both_files_is_picked_up(wit_keys: KeySet, tmp_path: Path) -> None:
    first, _ = _issue(wit_keys, tmp_path)
    source = WitFileSource(str(tmp_path / "wit.jwt"), str(tmp_path / "key"))
    assert (await source.aget()).wit == first
    assert source.get().wit == first
    second, key = _issue(wit_keys, tmp_path)
    identity = await source.aget()
    assert identity.wit == second
    assert identity.key.private_key.private_numbers() == key.private_key.private_numbers()  # type: ignore[union-attr]


def test_a_wit_that_does_not_match_the_key_is_refused(wit_keys: KeySet, tmp_path: Path) -> None:
    _issue(wit_keys, tmp_path)
    _write(tmp_path / "key", json.dumps(SigningKey.generate("ES256").to_private_jwk()))
    source = WitFileSource(str(tmp_path / "wit.jwt"), str(tmp_path / "key"))
    with pytest.raises(CredentialUnavailable, match="not the workload key"):
        source.get()


def test_a_key_file_without_a_private_key_is_refused(wit_keys: KeySet, tmp_path: Path) -> None:
    _issue(wit_keys, tmp_path)
    _write(tmp_path / "key", json.dumps(wit_keys.public_jwks()))
    with pytest.raises(CredentialUnavailable, match="holds no private key"):
        WitFileSource(str(tmp_path / "wit.jwt"), str(tmp_path / "key")).get()


def test_an_expired_wit_is_never_served(wit_keys: KeySet, tmp_path: Path) -> None:
    wit, key = WitIssuer(wit_keys, trust_domain=TD, clock=lambda: time.time() - 7200).issue_with_new_key(WORKLOAD)
    _write(tmp_path / "wit.jwt", wit)
    _write(tmp_path / "key", json.dumps(key.to_private_jwk()))
    with pytest.raises(CredentialUnavailable, match="expired") as info:
        WitFileSource(str(tmp_path / "wit.jwt"), str(tmp_path / "key")).get()
    assert wit not in str(info.value)


def test_a_missing_wit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialUnavailable, match="does not exist"):
        WitFileSource(str(tmp_path / "wit.jwt"), str(tmp_path / "key")).get()
