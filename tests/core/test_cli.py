"""The ``txtoken`` command, run as real subprocesses with this venv's interpreter (``python -m txtoken``)."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from txtoken import KeySet, TxnTokenVerifier, load_jwks

from ..conftest import RunningServer
from .conftest import ALL_ALGS, b64url, header, sign

TD = "cli.example"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
_SIG = "signature_invalid"


def txtoken(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "txtoken", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


@dataclass(frozen=True)
class Keys:
    dir: Path
    keys: Path
    jwks: Path
    kid: str

    def key_set(self) -> KeySet:
        return KeySet.load(self.keys)


@pytest.fixture(scope="module")
def cli_keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """One ``txtoken keygen`` (ES256, the default) shared by the module's tests."""
    d = tmp_path_factory.mktemp("cli")
    done = txtoken("keygen", "--out", "keys.json", "--public-out", "jwks.json", cwd=d)
    assert done.returncode == 0, done.stderr
    kid = KeySet.load(d / "keys.json").active.kid
    return Keys(d, d / "keys.json", d / "jwks.json", kid)


@pytest.fixture(scope="module")
def minted(cli_keys: Keys) -> str:
    done = txtoken(
        "mint",
        "--keys",
        str(cli_keys.keys),
        "--trust-domain",
        TD,
        "--sub",
        "user-42",
        "--scope",
        "trade.stocks",
        "--req-wl",
        "spiffe://cli.example/gateway",
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _claims_of(tok: str, jwks: Path) -> dict[str, Any]:
    verifier = TxnTokenVerifier(load_jwks(jwks.read_text()), trust_domain=TD)
    return verifier.verify(tok).claims.to_dict()


def _one_line_failure(done: subprocess.CompletedProcess[str], code: str, tok: str | None = None) -> None:
    assert done.returncode != 0
    assert done.stdout == ""  # no claims printed
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert f": {code}: " in lines[0], lines[0]
    if tok:
        assert tok not in done.stderr
        for part in tok.split("."):
            assert len(part) < 16 or part not in done.stderr


# --- keygen ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_keygen_writes_a_private_key_set_and_the_public_jwks(tmp_path: Path, alg: str) -> None:
    done = txtoken("keygen", "--alg", alg, "--out", "keys.json", "--public-out", "jwks.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    keys = KeySet.load(tmp_path / "keys.json")
    assert keys.active.alg == alg
    assert done.stderr.strip() == f"kid {keys.active.kid} ({alg})"
    assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600
    jwks = json.loads((tmp_path / "jwks.json").read_text())
    assert [k["kid"] for k in jwks["keys"]] == [keys.active.kid]
    assert not set(jwks["keys"][0]) & PRIVATE_MEMBERS
    assert load_jwks(jwks)[0] == keys.active.verification_key


def test_keygen_to_standard_output() -> None:
    done = txtoken("keygen")
    assert done.returncode == 0, done.stderr
    keys = KeySet.from_private_jwks(json.loads(done.stdout))
    assert keys.active.alg == "ES256"
    assert f"kid {keys.active.kid}" in done.stderr


# --- mint -----------------------------------------------------------------------------------------------------------


def test_mint_from_flags(cli_keys: Keys) -> None:
    done = txtoken(
        "mint",
        "--keys",
        str(cli_keys.keys),
        "--trust-domain",
        TD,
        "--sub",
        "user-42",
        "--scope",
        "trade.stocks",
        "--req-wl",
        "gateway",
        "--txn",
        "txn-1",
        "--tctx",
        '{"ticker": "MSFT"}',
        "--rctx",
        '{"req_ip": "192.0.2.7"}',
        "--issuer",
        "https://tts.cli.example",
        "--lifetime",
        "120",
    )
    assert done.returncode == 0, done.stderr
    tok = done.stdout.strip()
    assert done.stdout == tok + "\n"
    got = _claims_of(tok, cli_keys.jwks)
    assert got["exp"] - got["iat"] == 120
    assert abs(got["iat"] - time.time()) < 60
    assert {k: got[k] for k in ("aud", "sub", "scope", "req_wl", "txn", "tctx", "rctx", "iss")} == {
        "aud": TD,
        "sub": "user-42",
        "scope": "trade.stocks",
        "req_wl": "gateway",
        "txn": "txn-1",
        "tctx": {"ticker": "MSFT"},
        "rctx": {"req_ip": "192.0.2.7"},
        "iss": "https://tts.cli.example",
    }


def test_mint_from_a_claims_file(cli_keys: Keys, tmp_path: Path) -> None:
    claims_file = tmp_path / "claims.json"
    claims_file.write_text(
        json.dumps(
            {
                "sub": "from-file",
                "scope": "read",
                "req_wl": "batch",
                "tctx": {"order": 7},
                "act": {"sub": "agent-1"},
                "aud": "ignored.example",
            }
        )
    )
    done = txtoken(
        "mint", "--keys", str(cli_keys.keys), "--trust-domain", TD, "--claims", str(claims_file), "--sub", "flag-wins"
    )
    assert done.returncode == 0, done.stderr
    got = _claims_of(done.stdout.strip(), cli_keys.jwks)
    assert (got["sub"], got["scope"], got["req_wl"], got["tctx"], got["act"]) == (
        "flag-wins",
        "read",
        "batch",
        {"order": 7},
        {"sub": "agent-1"},
    )
    assert got["aud"] == TD  # the trust domain comes from --trust-domain only
    assert got["exp"] - got["iat"] == 300  # the default lifetime


def test_mint_without_required_claims_fails(cli_keys: Keys) -> None:
    done = txtoken("mint", "--keys", str(cli_keys.keys), "--trust-domain", TD, "--sub", "user-42")
    _one_line_failure(done, "configuration_error")
    assert "scope" in done.stderr and "req_wl" in done.stderr


# --- verify ---------------------------------------------------------------------------------------------------------


def test_verify_prints_the_claims(cli_keys: Keys, minted: str) -> None:
    done = txtoken("verify", minted, "--jwks", str(cli_keys.jwks), "--trust-domain", TD)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == _claims_of(minted, cli_keys.jwks)
    assert done.stderr == ""


def test_verify_reads_the_token_from_standard_input(cli_keys: Keys, minted: str) -> None:
    done = txtoken("verify", "-", "--jwks", str(cli_keys.jwks), "--trust-domain", TD, stdin=minted + "\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sub"] == "user-42"


def _serve_jwks(serve: Callable[..., RunningServer], jwks: Path) -> tuple[RunningServer, list[str]]:
    hits: list[str] = []

    async def endpoint(request: Request) -> JSONResponse:
        hits.append(request.url.path)
        return JSONResponse(json.loads(jwks.read_text()))

    return serve(Starlette(routes=[Route("/.well-known/jwks.json", endpoint)])), hits


def test_verify_with_a_jwks_url(cli_keys: Keys, minted: str, serve: Callable[..., RunningServer]) -> None:
    server, hits = _serve_jwks(serve, cli_keys.jwks)
    done = txtoken("verify", minted, "--jwks", f"{server.url}/.well-known/jwks.json", "--trust-domain", TD)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sub"] == "user-42"
    assert hits == ["/.well-known/jwks.json"]


def _expired(keys: KeySet) -> str:
    now = int(time.time())
    payload = {"iat": now - 900, "exp": now - 600, "aud": TD, "txn": "t", "sub": "s", "scope": "x", "req_wl": "w"}
    return sign(header(keys.active), payload, keys.active)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connections to it are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _failure_case(name: str, keys: Keys, tok: str, tmp_path: Path, port: int) -> tuple[list[str], str | None, str]:
    """(arguments, stdin, expected code) for one way of failing."""
    jwks = str(keys.jwks)
    head, payload, signature = tok.split(".")
    stranger = tmp_path / "stranger.json"
    stranger.write_text(json.dumps(KeySet.generate().public_jwks()))
    cases: dict[str, tuple[list[str], str | None, str]] = {
        "wrong-trust-domain": ([tok, "--jwks", jwks, "--trust-domain", "other.example"], None, "aud_invalid"),
        "tampered": ([f"{head}.{payload}.{signature[:-4]}AAAA", "--jwks", jwks, "--trust-domain", TD], None, _SIG),
        "garbage-stdin": (["-", "--jwks", jwks, "--trust-domain", TD], "not a token at all\n", "token_malformed"),
        "unknown-kid": ([tok, "--jwks", str(stranger), "--trust-domain", TD], None, "kid_unknown"),
        "missing-jwks": (
            [tok, "--jwks", str(tmp_path / "nope.json"), "--trust-domain", TD],
            None,
            "configuration_error",
        ),
        "endpoint-down": (
            [tok, "--jwks", f"http://127.0.0.1:{port}/jwks", "--trust-domain", TD],
            None,
            "keys_unavailable",
        ),
        "oversized": (["-", "--jwks", jwks, "--trust-domain", TD], "A" * 10_000, "token_too_large"),
        "expired": ([_expired(keys.key_set()), "--jwks", jwks, "--trust-domain", TD], None, "token_expired"),
        "alg-none": ([f"{b64url(b'{}')}.{payload}.", "--jwks", jwks, "--trust-domain", TD], None, _SIG),
    }
    return cases[name]


@pytest.mark.parametrize(
    "case",
    [
        "wrong-trust-domain",
        "tampered",
        "garbage-stdin",
        "unknown-kid",
        "missing-jwks",
        "endpoint-down",
        "oversized",
        "expired",
        "alg-none",
    ],
)
def test_verify_failure_is_one_line_with_the_code_and_no_claims(
    cli_keys: Keys, minted: str, tmp_path: Path, closed_port: int, case: str
) -> None:
    args, stdin, code = _failure_case(case, cli_keys, minted, tmp_path, closed_port)
    done = txtoken("verify", *args, stdin=stdin)
    _one_line_failure(done, code, tok=args[0] if args[0] != "-" else None)
    assert done.stderr.startswith("txtoken verify: ")


def test_verify_legacy_claims_switch(cli_keys: Keys) -> None:
    key = cli_keys.key_set().active
    now = int(time.time())
    old = {"iat": now, "exp": now + 60, "aud": TD, "txn": "t", "sub": "s", "purp": "trade", "req_wl": "w"}
    tok = sign(header(key, typ="txn_token"), old, key)
    refused = txtoken("verify", tok, "--jwks", str(cli_keys.jwks), "--trust-domain", TD)
    _one_line_failure(refused, "typ_invalid", tok)
    accepted = txtoken("verify", tok, "--jwks", str(cli_keys.jwks), "--trust-domain", TD, "--legacy-claims")
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["scope"] == "trade"


def test_console_script_and_python_m_behave_the_same(cli_keys: Keys, minted: str) -> None:
    script = Path(sys.executable).parent / "txtoken"
    assert script.exists()
    for args in (
        ["verify", minted, "--jwks", str(cli_keys.jwks), "--trust-domain", TD],
        ["verify", minted, "--jwks", str(cli_keys.jwks), "--trust-domain", "other.example"],
    ):
        via_module = txtoken(*args)
        via_script = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=60, check=False)
        assert (via_script.returncode, via_script.stdout, via_script.stderr) == (
            via_module.returncode,
            via_module.stdout,
            via_module.stderr,
        )
    assert via_module.returncode != 0  # the second pair is a failure


# --- issue 10: small CLI reports -----------------------------------------------------------------------------------


def test_version() -> None:
    """issue 10: ``txtoken --version`` did not exist."""
    import txtoken as package

    done = txtoken("--version")
    assert (done.returncode, done.stdout) == (0, f"txtoken {package.__version__}\n")


def test_mint_with_a_lifetime_default_verifiers_refuse_warns(cli_keys: Keys) -> None:
    """issue 10: ``txtoken mint --lifetime 3600`` printed a token every default verifier refuses, without a word."""
    args = ["mint", "--keys", str(cli_keys.keys), "--trust-domain", TD, "--sub", "s", "--scope", "r", "--req-wl", "w"]
    long = txtoken(*args, "--lifetime", "3600")
    assert long.returncode == 0, long.stderr
    assert "warning" in long.stderr and "lifetime_too_long" in long.stderr and "300" in long.stderr
    refused = txtoken("verify", long.stdout.strip(), "--jwks", str(cli_keys.jwks), "--trust-domain", TD)
    _one_line_failure(refused, "lifetime_too_long", long.stdout.strip())
    short = txtoken(*args, "--lifetime", "300")
    assert (short.returncode, short.stderr) == (0, "")


@pytest.mark.parametrize("flag", ["--keys", "--claims"])
def test_io_error_names_the_path(cli_keys: Keys, tmp_path: Path, flag: str) -> None:
    """issue 10: ``io_error`` messages did not say which file."""
    missing = tmp_path / "missing.json"
    args = {"--keys": str(cli_keys.keys), "--claims": None} | {flag: str(missing)}
    claims = ["--sub", "s", "--scope", "r", "--req-wl", "w"]
    done = txtoken("mint", "--trust-domain", TD, *claims, *[a for k, v in args.items() if v for a in (k, v)])
    _one_line_failure(done, "io_error")
    assert f"io_error: {missing}: No such file or directory" in done.stderr
