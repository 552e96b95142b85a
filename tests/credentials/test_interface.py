"""Every source implements the one interface the TTS client takes."""

from __future__ import annotations

from pathlib import Path

from txtoken.credentials import (
    CredentialSource,
    EnvCredentialSource,
    FileCredentialSource,
    GitHubActionsOidcSource,
    GitLabIdTokenSource,
    KeyPairAssertionSource,
    MetadataIdentitySource,
    SpiffeJwtSource,
)
from txtoken.keys import SigningKey

TTS = "https://tts.shop.example"


def test_every_source_is_a_credential_source(tmp_path: Path) -> None:
    sources: list[CredentialSource] = [
        EnvCredentialSource("CREDENTIAL"),
        FileCredentialSource(tmp_path / "token"),
        SpiffeJwtSource(TTS, socket="unix:///run/spire/agent.sock"),
        MetadataIdentitySource(TTS),
        GitHubActionsOidcSource(TTS),
        GitLabIdTokenSource("TTS_ID_TOKEN"),
        KeyPairAssertionSource(SigningKey.generate(), workload_id="wl", audience=TTS),
    ]
    assert all(isinstance(source, CredentialSource) for source in sources)
