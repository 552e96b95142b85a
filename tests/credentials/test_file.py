"""File credentials: rotation by rewrite and by the Kubernetes symlink swap, deleted files, expired tokens."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from txtoken.credentials import FileCredentialSource
from txtoken.errors import ConfigurationError, CredentialUnavailable
from txtoken.keys import SigningKey

from .fakes import Clock, make_jwt

SA_CLAIMS = {"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:shop:orders", "aud": "tts"}


@pytest.fixture(params=["settling", "settled"])
def settle(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test twice: as written (files just changed are re-read on every call), and with every file treated as
    settled at once, so that only the stat signature can reveal a change."""
    if request.param == "settled":
        monkeypatch.setattr("txtoken.credentials.file._SETTLE_SECONDS", 0.0)
    return str(request.param)


def write(path: Path, content: str, *, age: float = 0.0) -> None:
    """Write ``content`` in place; ``age`` > 0 back-dates the modification time."""
    path.write_text(content + "\n")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))


def projected_volume(root: Path, token: str, generation: str) -> None:
    """Lay out ``root`` as the kubelet's atomic writer does: ``token -> ..data/token``, ``..data -> ..<generation>``."""
    data_dir = root / f"..{generation}"
    data_dir.mkdir()
    (data_dir / "token").write_text(token)
    staged = root / "..data_tmp"
    staged.symlink_to(data_dir.name)
    os.replace(staged, root / "..data")  # the atomic flip
    if not (root / "token").is_symlink():
        (root / "token").symlink_to("..data/token")


def test_reads_the_token_and_its_expiry(tmp_path: Path, issuer_key: SigningKey) -> None:
    token = make_jwt(issuer_key, SA_CLAIMS, lifetime=3600)
    write(tmp_path / "token", token)
    credential = FileCredentialSource(tmp_path / "token").get()
    assert credential.value == token
    assert credential.expires_at is not None and credential.expires_at > time.time() + 3500


def test_rotation_by_rewrite_is_picked_up(tmp_path: Path, issuer_key: SigningKey, settle: str) -> None:
    path = tmp_path / "token"
    first, second = make_jwt(issuer_key, SA_CLAIMS), make_jwt(issuer_key, SA_CLAIMS)
    write(path, first, age=60)
    source = FileCredentialSource(path)
    assert source.get().value == first
    assert source.get().value == first
    write(path, second, age=30)
    assert source.get().value == second


def test_rewrite_within_the_same_instant_is_picked_up(tmp_path: Path, issuer_key: SigningKey) -> None:
    path = tmp_path / "token"
    first, second = make_jwt(issuer_key, SA_CLAIMS), make_jwt(issuer_key, SA_CLAIMS)
    assert len(first) == len(second)
    write(path, first)
    source = FileCredentialSource(path)
    assert source.get().value == first
    write(path, second)
    assert source.get().value == second


@pytest.mark.anyio
async def test_rotation_by_symlink_swap_is_picked_up(tmp_path: Path, issuer_key: SigningKey, settle: str) -> None:
    first, second = make_jwt(issuer_key, SA_CLAIMS), make_jwt(issuer_key, SA_CLAIMS)
    projected_volume(tmp_path, first, "2026_01_01_00_00_00.1")
    source = FileCredentialSource(tmp_path / "token")
    assert (await source.aget()).value == first
    projected_volume(tmp_path, second, "2026_01_01_00_48_00.2")
    assert (await source.aget()).value == second
    assert source.get().value == second


def test_deleted_file_is_an_error_not_a_stale_token(tmp_path: Path, issuer_key: SigningKey, settle: str) -> None:
    path = tmp_path / "token"
    token = make_jwt(issuer_key, SA_CLAIMS)
    write(path, token, age=60)
    source = FileCredentialSource(path)
    source.get()
    path.unlink()
    with pytest.raises(CredentialUnavailable, match="does not exist") as info:
        source.get()
    assert str(path) in str(info.value)
    assert token not in str(info.value)


@pytest.mark.anyio
async def test_deleted_file_is_an_error_in_async_code_too(tmp_path: Path, issuer_key: SigningKey) -> None:
    path = tmp_path / "token"
    write(path, make_jwt(issuer_key, SA_CLAIMS), age=60)
    source = FileCredentialSource(path)
    await source.aget()
    path.unlink()
    with pytest.raises(CredentialUnavailable, match="does not exist"):
        await source.aget()


def test_unreadable_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialUnavailable, match="is a directory"):
        FileCredentialSource(tmp_path).get()


def test_expired_token_is_not_served(tmp_path: Path, issuer_key: SigningKey) -> None:
    path = tmp_path / "token"
    token = make_jwt(issuer_key, SA_CLAIMS, lifetime=600, now=time.time() - 700)
    write(path, token)
    with pytest.raises(CredentialUnavailable, match="expired") as info:
        FileCredentialSource(path).get()
    assert token not in str(info.value)


def test_cached_token_is_not_served_past_its_expiry(tmp_path: Path, issuer_key: SigningKey, clock: Clock) -> None:
    path = tmp_path / "token"
    write(path, make_jwt(issuer_key, SA_CLAIMS, lifetime=600, now=clock()), age=60)
    source = FileCredentialSource(path, clock=clock)
    source.get()
    clock.advance(601)  # the file was never rotated
    with pytest.raises(CredentialUnavailable, match="expired"):
        source.get()


def test_token_inside_the_refresh_margin_is_served_and_rotation_then_picked_up(
    tmp_path: Path, issuer_key: SigningKey, clock: Clock
) -> None:
    path = tmp_path / "token"
    old = make_jwt(issuer_key, SA_CLAIMS, lifetime=600, now=clock())
    write(path, old, age=60)
    source = FileCredentialSource(path, refresh_margin=120, clock=clock)
    clock.advance(500)  # 100 s left: inside the margin, still valid
    assert source.get().value == old
    new = make_jwt(issuer_key, SA_CLAIMS, lifetime=600, now=clock())
    write(path, new, age=1)
    assert source.get().value == new


def test_not_a_jwt_is_refused_unless_opaque(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write(path, "opaque-credential-value")
    with pytest.raises(CredentialUnavailable, match="does not hold a JWT") as info:
        FileCredentialSource(path).get()
    assert "opaque-credential-value" not in str(info.value)
    credential = FileCredentialSource(path, jwt=False).get()
    assert credential.value == "opaque-credential-value"
    assert credential.expires_at is None


def test_empty_and_oversized_files_are_refused(tmp_path: Path) -> None:
    empty, big = tmp_path / "empty", tmp_path / "big"
    write(empty, "  ")
    write(big, "x" * 70_000)
    with pytest.raises(CredentialUnavailable, match="is empty"):
        FileCredentialSource(empty, jwt=False).get()
    with pytest.raises(CredentialUnavailable, match="larger than"):
        FileCredentialSource(big, jwt=False).get()


def test_token_never_in_repr_or_logs(tmp_path: Path, issuer_key: SigningKey, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "token"
    token = make_jwt(issuer_key, SA_CLAIMS)
    write(path, token)
    source = FileCredentialSource(path)
    credential = source.get()
    assert token not in repr(source) and token not in repr(credential)
    assert token not in caplog.text


def test_empty_path_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        FileCredentialSource("")
