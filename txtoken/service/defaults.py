"""The embedded default: what ``txtoken serve`` runs without a configuration file (development only).

A trust domain, a TTS identifier, a signing key created once in the data directory, and one development workload
that authenticates with a key pair also kept there (``workload-key.json``, a private JWK for signing client
assertions), may present self-signed, unsigned-JSON and Txn-Token subjects, and may request anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from txtoken.keys import SigningKey
from txtoken.service.config import ServiceSettings, load_settings
from txtoken.service.keystore import KEY_FILE

__all__ = [
    "DEV_IDENTIFIER",
    "DEV_TRUST_DOMAIN",
    "DEV_WORKLOAD",
    "WORKLOAD_KEY_FILE",
    "data_dir",
    "describe",
    "embedded_settings",
]

DEV_TRUST_DOMAIN = "txtoken.local"
DEV_IDENTIFIER = "https://tts.txtoken.local"
DEV_WORKLOAD = "spiffe://txtoken.local/dev"
WORKLOAD_KEY_FILE = "workload-key.json"


def data_dir() -> Path:
    """``$TXTOKEN_DATA_DIR``, else ``.txtoken`` in the current directory."""
    return Path(os.environ.get("TXTOKEN_DATA_DIR") or ".txtoken")


def _workload_key(directory: Path) -> SigningKey:
    """The development workload's key pair, created once (never replaced by a concurrent start)."""
    path = directory / WORKLOAD_KEY_FILE
    directory.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return SigningKey.from_jwk(json.loads(path.read_text(encoding="utf-8")))
    key = SigningKey.generate()
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(key.to_private_jwk(), fh, indent=2)
    return key


def embedded_settings() -> ServiceSettings:
    """The development settings (``TXTOKEN_*`` variables still override them)."""
    directory = data_dir()
    workload_key = _workload_key(directory)
    return load_settings(
        None,
        mode="development",
        identifier=DEV_IDENTIFIER,
        trust_domains=[DEV_TRUST_DOMAIN],
        data_dir=directory,
        workloads=[
            {
                "id": DEV_WORKLOAD,
                "authn": [{"method": "key", "jwks": {"keys": [workload_key.verification_key.to_jwk()]}}],
                "subject_token_types": ["self_signed", "unsigned_json", "txn_token"],
                "scopes": ["*"],
                "asserted_subject_scopes": ["*"],
                "rctx": ["*"],
                "tctx": ["*"],
            }
        ],
    )


def describe(settings: ServiceSettings, kid: str, alg: str) -> str:
    """One line describing the embedded default, without secrets."""
    directory = settings.key_dir
    return (
        f"txtoken serve: development default (no --config): trust domain {', '.join(settings.trust_domains)}, "
        f"identifier {settings.identifier}, signing key {kid} ({alg}) in {directory / KEY_FILE}; policy: workload "
        f"{DEV_WORKLOAD} authenticates with the key pair in {settings.data_dir / WORKLOAD_KEY_FILE} and may request "
        "any scope and context for self_signed, unsigned_json and txn_token subjects"
    )
