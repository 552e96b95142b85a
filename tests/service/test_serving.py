"""Serving the TTS as real processes: workers sharing keys, the app factory under uvicorn, TLS with and without
client certificates, graceful shutdown on SIGTERM, JSON logs, and Prometheus text at ``/metrics``."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client.parser import text_string_to_metric_families

from txtoken.claims import CLIENT_ASSERTION_TYPE_JWT_BEARER, TOKEN_TYPE_UNSIGNED_JSON
from txtoken.cli import main
from txtoken.keys import SigningKey
from txtoken.keysource import RemoteJwksKeySource
from txtoken.service.audit import AUDIT_LOGGER, token_digest
from txtoken.service.serving import APP_FACTORY, CONFIG_ENV
from txtoken.verify import TxnTokenVerifier

from .conftest import GATEWAY, IDENTIFIER, TRUST_DOMAIN, StartTts, Tts, assertion
from .test_replicas import _config, _free_port

pytestmark = pytest.mark.slow

SUBJECT = '{"sub": "alice"}'


class Server:
    """A server process on a loopback port (``txtoken serve`` unless ``argv`` says otherwise); output in a file."""

    def __init__(self, tmp_path: Path, args: list[str], *, argv: list[str] | None = None, **env: str) -> None:
        self.port = _free_port()
        self.tls = "--ssl-certfile" in args
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        self.log = tmp_path / f"server-{self.port}.log"
        command = argv or [sys.executable, "-m", "txtoken", "serve"]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port), *args],
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
            )

    def wait_ready(self, **client: Any) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1, **client).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("the server did not become ready")

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + 20
        while text not in self.output():
            assert time.monotonic() < deadline, f"never logged {text!r}: {self.output()}"
            time.sleep(0.02)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def gateway() -> SigningKey:
    return SigningKey.generate()


def _form(gateway: SigningKey) -> dict[str, str]:
    return {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "requested_token_type": "urn:ietf:params:oauth:token-type:txn_token",
        "audience": TRUST_DOMAIN,
        "scope": "read",
        "subject_token": SUBJECT,
        "subject_token_type": TOKEN_TYPE_UNSIGNED_JSON,
        "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": assertion(gateway, GATEWAY, aud=IDENTIFIER),
    }


def _issue(url: str, gateway: SigningKey, **client: Any) -> str:
    with httpx.Client(**client) as http:  # a connection of its own: any worker may accept it
        response = http.post(f"{url}/token", data=_form(gateway))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_workers_share_keys_and_log_json(tmp_path: Path, servers: list[Server], gateway: SigningKey) -> None:
    config = _config(tmp_path, gateway)
    server = Server(tmp_path, ["--config", str(config), "--workers", "2", "--log-format", "json"])
    servers.append(server)
    server.wait_ready()
    tokens: list[str] = []
    workers: dict[str, int] = {}
    with ThreadPoolExecutor(8) as pool:
        for _ in range(10):  # until tokens from both workers are seen (connections go to whichever accepts first)
            tokens += pool.map(lambda _: _issue(server.url, gateway), range(8))
            audit = [r for r in _json_lines(server.output()) if r["logger"] == AUDIT_LOGGER]
            workers = {r["token_sha256"]: r["process"] for r in audit if r["outcome"] == "issued"}
            if len(set(workers.values())) >= 2:
                break
    assert len(set(workers.values())) == 2, "every token came from one worker"
    assert server.process.pid not in workers.values()

    source = RemoteJwksKeySource(f"{server.url}/.well-known/jwks.json", allow_http=True)
    verifier = TxnTokenVerifier(source, trust_domain=TRUST_DOMAIN, issuer=IDENTIFIER)
    assert {verifier.verify(token).sub for token in tokens} == {"alice"}
    assert source.fetch_count == 1  # one JWKS for the tokens of both workers
    assert {token_digest(t) for t in tokens} <= set(workers)

    assert server.stop() == 0
    records = _json_lines(server.output())
    assert records and all({"time", "level", "logger", "message", "process"} <= set(r) for r in records)
    issued = next(r for r in records if r["logger"] == AUDIT_LOGGER)
    assert (issued["req_wl"], issued["aud"], issued["scope"]) == (GATEWAY, TRUST_DOMAIN, "read")
    assert not any(token in server.output() for token in tokens)


def test_sigterm_lets_the_in_flight_request_finish(tmp_path: Path, servers: list[Server], gateway: SigningKey) -> None:
    server = Server(tmp_path, ["--config", str(_config(tmp_path, gateway))])
    servers.append(server)
    server.wait_ready()
    body = urlencode(_form(gateway)).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(
            b"POST /token HTTP/1.1\r\nHost: tts\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")  # the endpoint is now reading the body
        server.process.send_signal(signal.SIGTERM)
        server.wait_for("Waiting for connections to close")
        sock.sendall(body)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(payload)["issued_token_type"] == "urn:ietf:params:oauth:token-type:txn_token"
    assert server.process.wait(timeout=20) == 0


def test_uvicorn_serves_the_app_factory(tmp_path: Path, servers: list[Server], gateway: SigningKey) -> None:
    config = _config(tmp_path, gateway)
    uvicorn = [sys.executable, "-m", "uvicorn", "--factory", APP_FACTORY, "--no-proxy-headers"]
    server = Server(tmp_path, [], argv=uvicorn, **{CONFIG_ENV: str(config)})
    servers.append(server)
    server.wait_ready()
    token = _issue(server.url, gateway)
    source = RemoteJwksKeySource(f"{server.url}/.well-known/jwks.json", allow_http=True)
    assert TxnTokenVerifier(source, trust_domain=TRUST_DOMAIN).verify(token).sub == "alice"


# -- TLS ---------------------------------------------------------------------------------------------------------


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificates(directory: Path) -> dict[str, Path]:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "serving test CA")])

    def certificate(name: x509.Name, key: Any, *extensions: tuple[Any, bool]) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(ca_key, hashes.SHA256())

    ca = certificate(
        ca_name,
        ca_key,
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True),
        (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False),
    )
    files: dict[str, Path] = {"ca": directory / "ca.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for role, usage, san in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH, x509.IPAddress(ipaddress.ip_address("127.0.0.1"))),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH, x509.UniformResourceIdentifier(GATEWAY)),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, role)])
        cert = certificate(
            name, key, (x509.SubjectAlternativeName([san]), False), (x509.ExtendedKeyUsage([usage]), False)
        )
        files[role] = directory / f"{role}.pem"
        files[role].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{role}-key"] = directory / f"{role}.key"
        files[f"{role}-key"].write_bytes(_pem_key(key))
    return files


def _context(files: dict[str, Path], *, with_client_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(files["ca"]))
    if with_client_certificate:
        context.load_cert_chain(files["client"], files["client-key"])
    return context


def test_https_with_required_client_certificates(tmp_path: Path, servers: list[Server], gateway: SigningKey) -> None:
    files = _certificates(tmp_path)
    tls = ["--ssl-certfile", str(files["server"]), "--ssl-keyfile", str(files["server-key"])]
    mtls = [*tls, "--ssl-ca-certs", str(files["ca"]), "--ssl-cert-reqs", "required"]
    config = ["--config", str(_config(tmp_path, gateway))]
    plain, mutual = Server(tmp_path, [*config, *tls]), Server(tmp_path, [*config, *mtls])
    servers += [plain, mutual]
    trusted = _context(files, with_client_certificate=False)
    with_certificate = _context(files, with_client_certificate=True)
    plain.wait_ready(verify=trusted)
    mutual.wait_ready(verify=with_certificate)

    assert plain.url.startswith("https://")
    assert _issue(plain.url, gateway, verify=trusted)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{plain.url}/readyz")  # the test CA is not trusted by default
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{mutual.url}/readyz", verify=trusted)  # no client certificate: no connection
    assert _issue(mutual.url, gateway, verify=with_certificate)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics", "--workers", "2"], "--metrics needs --workers 1"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--ssl-keyfile", "k.pem"], "TLS needs --ssl-certfile"),
        (["--ssl-certfile", "c.pem", "--ssl-cert-reqs", "required"], "--ssl-cert-reqs needs --ssl-ca-certs"),
    ],
)
def test_serve_options_that_cannot_work_are_refused(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", *args]) == 1
    assert message in capsys.readouterr().err


# -- /metrics ----------------------------------------------------------------------------------------------------


def _scrape(url: str) -> dict[str, list[Any]]:
    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def test_metrics_scraped_from_a_running_tts(start_tts: StartTts) -> None:
    def metrics_on(data: dict[str, Any]) -> None:
        data["metrics"] = {"enabled": True}

    tts: Tts = start_tts(metrics_on)
    tts.issue(scope="trade.read")
    tts.post(tts.form(scope="trade.admin"))
    tts.post(tts.form(scope="trade.admin"))
    families = _scrape(tts.url)

    issuances = {
        (s.labels["txtoken_outcome"], s.labels.get("error_type")): s.value
        for s in families["txtoken_issuances"]
        if s.name == "txtoken_issuances_total"
    }
    assert issuances == {("success", ""): 1.0, ("failure", "invalid_scope"): 2.0}
    sample = next(s for s in families["txtoken_issuances"] if s.name == "txtoken_issuances_total")
    assert sample.labels["txtoken_subject_token_type"] == "access_token"
    for samples in families.values():
        for s in samples:
            assert not {"txtoken_txn", "txn", "sub", "txtoken_requester"} & set(s.labels)  # low cardinality


def test_metrics_are_off_unless_enabled(start_tts: StartTts) -> None:
    tts = start_tts()
    assert httpx.get(f"{tts.url}/metrics").status_code == 404


def test_serve_metrics_flag(tmp_path: Path, servers: list[Server], gateway: SigningKey) -> None:
    server = Server(tmp_path, ["--config", str(_config(tmp_path, gateway)), "--metrics"])
    servers.append(server)
    server.wait_ready()
    token = _issue(server.url, gateway)
    verifier = TxnTokenVerifier(
        RemoteJwksKeySource(f"{server.url}/.well-known/jwks.json", allow_http=True), trust_domain=TRUST_DOMAIN
    )
    verifier.verify(token)
    families = _scrape(server.url)
    (issued,) = (s for s in families["txtoken_issuances"] if s.name == "txtoken_issuances_total")
    assert (issued.labels["txtoken_outcome"], issued.value) == ("success", 1.0)
    assert "txtoken_verification_duration_seconds" not in families  # verified here, not at the TTS
    assert server.stop() == 0
