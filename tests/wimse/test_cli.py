"""``txtoken wimse verify|issue|wpt`` as real subprocesses: exit status, one JSON object or one error line, no
token echoed, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from txtoken import KeySet

from .vectors import ACCESS_TOKEN, ANCHOR_JWK, AUDIENCE, NOW, TRUST_DOMAIN, WIT, WIT_EXP, WORKLOAD, WPT, WPT_EXP


def txtoken(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "txtoken", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "anchors": tmp_path / "anchors.json",
        "wit": tmp_path / "wit.jwt",
        "wpt": tmp_path / "wpt.jwt",
        "access": tmp_path / "access.txt",
    }
    paths["anchors"].write_text(json.dumps({"keys": [ANCHOR_JWK]}))
    paths["wit"].write_text(WIT + "\n")
    paths["wpt"].write_text(WPT)  # no trailing newline: both are accepted
    paths["access"].write_text(ACCESS_TOKEN + "\n")
    return paths


def _verify_draft(files: dict[str, Path], *extra: str) -> subprocess.CompletedProcess[str]:
    return txtoken(
        "wimse", "verify", "--trust-domain", TRUST_DOMAIN, "--trust-anchors", str(files["anchors"]),
        "--audience", AUDIENCE, "--wit", str(files["wit"]), "--wpt", str(files["wpt"]),
        "--access-token", str(files["access"]), *extra,
    )  # fmt: skip


def _assert_refused(result: subprocess.CompletedProcess[str], code: str) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"txtoken wimse verify: {code}: ")
    for secret in (WIT, WPT, ACCESS_TOKEN, WIT.split(".")[1], WPT.split(".")[2]):
        assert secret not in result.stderr


def test_verify_the_drafts_examples_with_a_pinned_clock_spec_5_2(files: dict[str, Path]) -> None:
    result = _verify_draft(files, "--now", str(NOW))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["workload"] == WORKLOAD
    assert out["wit"]["sub"] == WORKLOAD and out["wit"]["cnf"]["jwk"]["alg"] == "EdDSA"
    assert out["wpt"]["jti"] == "__bwc4ESC3acc2LTC1-_x"
    assert result.stderr == ""


def test_verify_refuses_the_wpt_past_exp_plus_leeway(files: dict[str, Path]) -> None:
    _assert_refused(_verify_draft(files, "--now", str(WPT_EXP + 5)), "wpt_expired")


def test_verify_refuses_the_wit_past_exp_plus_leeway(files: dict[str, Path]) -> None:
    _assert_refused(_verify_draft(files, "--now", str(WIT_EXP + 30)), "wit_expired")


def test_verify_without_a_pinned_clock_refuses_the_expired_examples(files: dict[str, Path]) -> None:
    _assert_refused(_verify_draft(files), "wit_expired")


def test_verify_refuses_a_wrong_access_token(files: dict[str, Path]) -> None:
    files["access"].write_text("another-token\n")
    _assert_refused(_verify_draft(files, "--now", str(NOW)), "wpt_ath_mismatch")


def test_verify_refuses_a_txn_token_the_wpt_does_not_bind(files: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "txn.jwt").write_text("eyJhbGciOiJFUzI1NiJ9.e30.c2ln\n")
    result = _verify_draft(files, "--now", str(NOW), "--txn-token", str(tmp_path / "txn.jwt"))
    _assert_refused(result, "wpt_tth_mismatch")


def test_verify_refuses_another_audience(files: dict[str, Path]) -> None:
    result = txtoken(
        "wimse", "verify", "--trust-domain", TRUST_DOMAIN, "--trust-anchors", str(files["anchors"]),
        "--audience", "https://other.example.com/path", "--wit", str(files["wit"]), "--wpt", str(files["wpt"]),
        "--access-token", str(files["access"]), "--now", str(NOW),
    )  # fmt: skip
    _assert_refused(result, "wpt_aud_invalid")


def test_verify_refuses_a_token_file_with_more_than_a_trailing_newline(files: dict[str, Path]) -> None:
    files["wpt"].write_text(WPT + "\n\n")
    _assert_refused(_verify_draft(files, "--now", str(NOW)), "wpt_invalid")


def test_verify_reports_a_missing_file_without_a_traceback(files: dict[str, Path]) -> None:
    files["wit"].unlink()
    _assert_refused(_verify_draft(files, "--now", str(NOW)), "io_error")


def test_issue_wpt_and_verify_round_trip(tmp_path: Path) -> None:
    keys = KeySet.generate("ES256")
    keys.save(tmp_path / "wit-keys.json")
    (tmp_path / "anchors.json").write_text(json.dumps(keys.public_jwks()))
    workload = "spiffe://shop.example/ns/shop/sa/inventory"
    issued = txtoken(
        "wimse", "issue", "--keys", str(tmp_path / "wit-keys.json"), "--trust-domain", "shop.example",
        "--workload", workload, "--key-out", str(tmp_path / "workload-key.json"), "--alg", "Ed25519",
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    (tmp_path / "wit.jwt").write_text(issued.stdout)
    (tmp_path / "txn.jwt").write_text("eyJhbGciOiJFUzI1NiJ9.e30.c2ln\n")
    target = "https://payments.shop.example/charges"
    wpt = txtoken(
        "wimse", "wpt", "--key", str(tmp_path / "workload-key.json"), "--wit", str(tmp_path / "wit.jwt"),
        "--audience", target + "?id=7", "--txn-token", str(tmp_path / "txn.jwt"),
    )  # fmt: skip
    assert wpt.returncode == 0, wpt.stderr
    (tmp_path / "wpt.jwt").write_text(wpt.stdout)
    verified = txtoken(
        "wimse", "verify", "--trust-domain", "shop.example", "--trust-anchors", str(tmp_path / "anchors.json"),
        "--audience", target, "--wit", str(tmp_path / "wit.jwt"), "--wpt", str(tmp_path / "wpt.jwt"),
        "--txn-token", str(tmp_path / "txn.jwt"),
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    out = json.loads(verified.stdout)
    assert out["workload"] == workload
    assert out["wpt"]["aud"] == target
    assert "tth" in out["wpt"]


def test_issue_refuses_an_identifier_outside_the_trust_domain(tmp_path: Path) -> None:
    KeySet.generate("ES256").save(tmp_path / "wit-keys.json")
    result = txtoken(
        "wimse", "issue", "--keys", str(tmp_path / "wit-keys.json"), "--trust-domain", "shop.example",
        "--workload", "spiffe://evil.example/x", "--key-out", str(tmp_path / "k.json"),
    )  # fmt: skip
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("txtoken wimse issue: configuration_error: ")
