"""`txtoken serve` as real processes: two replicas sharing one key directory issue interchangeable tokens (§3: one
logical TTS per trust domain), and the embedded default starts with one descriptive log line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RedisServer
from txtoken.claims import CLIENT_ASSERTION_TYPE_JWT_BEARER, TOKEN_TYPE_SELF_SIGNED, TOKEN_TYPE_UNSIGNED_JSON
from txtoken.keys import KeySet, SigningKey
from txtoken.keysource import RemoteJwksKeySource
from txtoken.service.defaults import DEV_IDENTIFIER, DEV_TRUST_DOMAIN, DEV_WORKLOAD
from txtoken.service.keystore import KEY_FILE
from txtoken.verify import TxnTokenVerifier

from .conftest import GATEWAY, IDENTIFIER, TRUST_DOMAIN, assertion

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Replica:
    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"replica-{self.port}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "txtoken", "serve", "--port", str(self.port), *args],
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"replica exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("replica did not become ready")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.log.read_text(encoding="utf-8")


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        replica.stop()


def _config(tmp_path: Path, gateway: SigningKey) -> Path:
    keys_dir = tmp_path / "shared-keys"
    KeySet.generate().save(keys_dir / KEY_FILE)
    jwks = tmp_path / "gateway.jwks.json"
    jwks.write_text(json.dumps({"keys": [gateway.verification_key.to_jwk()]}), encoding="utf-8")
    config = tmp_path / "tts.toml"
    config.write_text(
        f"""
identifier = "{IDENTIFIER}"
trust_domains = ["{TRUST_DOMAIN}"]
[keys]
dir = "{keys_dir}"
[[workloads]]
id = "{GATEWAY}"
subject_token_types = ["unsigned_json"]
scopes = ["read"]
asserted_subject_scopes = ["read"]
[[workloads.authn]]
method = "key"
jwks_file = "{jwks}"
""",
        encoding="utf-8",
    )
    return config


def _form(
    key: SigningKey, workload: str, identifier: str, audience: str, token_type: str, subject: str
) -> dict[str, str]:
    """A token request with a fresh key-pair client assertion."""
    return {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "requested_token_type": "urn:ietf:params:oauth:token-type:txn_token",
        "audience": audience,
        "scope": "read",
        "subject_token": subject,
        "subject_token_type": token_type,
        "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": assertion(key, workload, aud=identifier),
    }


def _issue(
    url: str, key: SigningKey, workload: str, identifier: str, audience: str, token_type: str, subject: str
) -> str:
    response = httpx.post(f"{url}/token", data=_form(key, workload, identifier, audience, token_type, subject))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def test_two_replicas_share_one_key_directory(tmp_path: Path, replicas: list[Replica]) -> None:
    gateway = SigningKey.generate()
    config = _config(tmp_path, gateway)
    replicas.extend(Replica(["--config", str(config)], tmp_path) for _ in range(2))
    for replica in replicas:
        replica.wait_ready()
    tokens = [
        _issue(r.url, gateway, GATEWAY, IDENTIFIER, TRUST_DOMAIN, TOKEN_TYPE_UNSIGNED_JSON, '{"sub": "alice"}')
        for r in replicas
    ]
    for replica in replicas:
        source = RemoteJwksKeySource(f"{replica.url}/.well-known/jwks.json", allow_http=True)
        verifier = TxnTokenVerifier(source, trust_domain=TRUST_DOMAIN, issuer=IDENTIFIER)
        assert [verifier.verify(t).sub for t in tokens] == ["alice", "alice"]
    logs = [replica.stop() for replica in replicas]
    assert all("production mode" in log and str(config) in log for log in logs)


def test_replicas_with_replay_redis_url_accept_a_key_pair_assertion_once_between_them(
    tmp_path: Path, replicas: list[Replica], redis_server: RedisServer
) -> None:
    """``TXTOKEN_REPLAY_REDIS_URL`` (or ``replay_redis_url`` in the file): the replicas share the used ``jti``s."""
    gateway = SigningKey.generate()
    config = _config(tmp_path, gateway)
    env = {"TXTOKEN_REPLAY_REDIS_URL": redis_server.url}
    replicas.extend(Replica(["--config", str(config)], tmp_path, env=env) for _ in range(2))
    for replica in replicas:
        replica.wait_ready()
    form = _form(gateway, GATEWAY, IDENTIFIER, TRUST_DOMAIN, TOKEN_TYPE_UNSIGNED_JSON, '{"sub": "alice"}')
    first, second = (httpx.post(f"{replica.url}/token", data=form) for replica in replicas)
    assert first.status_code == 200, first.text
    assert second.status_code == 401
    assert second.json()["error_description"] == "client_assertion: its jti was already used"


def test_embedded_default_starts_with_one_line_and_keeps_its_key(tmp_path: Path, replicas: list[Replica]) -> None:
    data_dir = tmp_path / "data"
    first = Replica([], tmp_path, env={"TXTOKEN_DATA_DIR": str(data_dir)})
    replicas.append(first)
    first.wait_ready()
    workload_key = SigningKey.from_jwk(json.loads((data_dir / "workload-key.json").read_text(encoding="utf-8")))
    subject = assertion(workload_key, DEV_WORKLOAD, aud=DEV_IDENTIFIER, sub="dev-user")
    token = _issue(
        first.url, workload_key, DEV_WORKLOAD, DEV_IDENTIFIER, DEV_TRUST_DOMAIN, TOKEN_TYPE_SELF_SIGNED, subject
    )
    kid = json.loads((data_dir / KEY_FILE).read_text(encoding="utf-8"))["keys"][0]["kid"]
    log = first.stop()
    lines = [line for line in log.splitlines() if line.startswith("txtoken serve:")]
    assert len(lines) == 1
    assert DEV_TRUST_DOMAIN in lines[0] and kid in lines[0] and DEV_WORKLOAD in lines[0]
    assert '"d"' not in log and workload_key.to_private_jwk()["d"] not in log
    assert token not in log

    second = Replica([], tmp_path, env={"TXTOKEN_DATA_DIR": str(data_dir)})
    replicas.append(second)
    second.wait_ready()
    source = RemoteJwksKeySource(f"{second.url}/.well-known/jwks.json", allow_http=True)
    assert TxnTokenVerifier(source, trust_domain=DEV_TRUST_DOMAIN).verify(token).sub == "dev-user"
    assert kid in second.stop()


def test_production_config_without_keys_fails_at_startup(tmp_path: Path) -> None:
    config = tmp_path / "tts.toml"
    config.write_text(
        f'identifier = "{IDENTIFIER}"\ntrust_domains = ["{TRUST_DOMAIN}"]\n[keys]\ndir = "{tmp_path / "none"}"\n',
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "txtoken", "serve", "--config", str(config), "--port", str(_free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "never generates keys" in result.stderr
    assert not (tmp_path / "none" / KEY_FILE).exists()


def test_bad_config_fails_at_startup_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "tts.toml"
    config.write_text(f'identifier = "{IDENTIFIER}"\ntrust_domains = "{TRUST_DOMAIN}"\n', encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "txtoken", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "trust_domains: Input should be a valid list" in result.stderr


@pytest.mark.parametrize("level, startup_line", [("info", True), ("warning", False)])
def test_serve_log_level(tmp_path: Path, replicas: list[Replica], level: str, startup_line: bool) -> None:
    """issue 10: ``txtoken serve`` had no ``--log-level``; at ``warning`` its start-up line (INFO) is left out."""
    replica = Replica(["--log-level", level], tmp_path, env={"TXTOKEN_DATA_DIR": str(tmp_path / "data")})
    replicas.append(replica)
    replica.wait_ready()
    log = replica.stop()
    assert ("txtoken serve: development default" in log) is startup_line
    refused = subprocess.run(
        [sys.executable, "-m", "txtoken", "serve", "--log-level", "loud"], capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 2 and "--log-level" in refused.stderr
