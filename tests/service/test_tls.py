"""§11.5: workloads MUST authenticate the TTS; with https, TLS certificates MUST be checked (RFC 9110 §4.3.4).

The TTS is served over https on loopback with a certificate from a test CA: the client refuses it by default, and
accepts it once that CA is the one it trusts."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from txtoken.claims import TOKEN_TYPE_ACCESS_TOKEN
from txtoken.client import TokenServiceClient
from txtoken.errors import TokenServiceUnavailable
from txtoken.service import create_app

from ..conftest import RunningServer
from .conftest import TRUST_DOMAIN, Tts


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "txtoken test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tts")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "tts.pem", directory / "tts.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_file, cert_file, key_file


def test_client_checks_the_tts_certificate_11_5(tts: Tts, serve: Callable[..., RunningServer], tmp_path: Path) -> None:
    ca_file, cert_file, key_file = _certificates(tmp_path)
    server = serve(create_app(tts.service), proxy_headers=False, ssl_certfile=cert_file, ssl_keyfile=key_file)
    endpoint = f"https://127.0.0.1:{server.port}/token"
    params: dict[str, Any] = {"subject_token_type": TOKEN_TYPE_ACCESS_TOKEN, "scope": "trade.read"}

    with (
        TokenServiceClient(endpoint, credential=tts.gateway_assertion, trust_domain=TRUST_DOMAIN, retries=0) as client,
        pytest.raises(TokenServiceUnavailable),
    ):
        client.exchange(subject_token=tts.platform.access_token(), **params)

    trusted = httpx.Client(verify=ssl.create_default_context(cafile=str(ca_file)))
    with TokenServiceClient(endpoint, credential=tts.gateway_assertion, trust_domain=TRUST_DOMAIN, client=trusted) as c:
        response = c.exchange(subject_token=tts.platform.access_token(), **params)
    trusted.close()
    assert tts.verifier().verify(response.access_token).scopes == {"trade.read"}
