"""Signing keys: a shared key directory, created once in development, never generated in production, reloaded
when ``txtoken keys rotate`` changes it, and the old key published until the overlap ends."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from txtoken.cli import main
from txtoken.errors import ConfigurationError, UnknownKey
from txtoken.keys import KeySet
from txtoken.service import KeyStore, rotate_keys
from txtoken.service.keystore import KEY_FILE

from .conftest import StartTts, Tts


def test_production_never_generates_a_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="never generates keys"):
        KeyStore(tmp_path, create=False, algorithm="ES256")
    assert not (tmp_path / KEY_FILE).exists()


def test_development_creates_the_key_once_even_when_replicas_start_together(tmp_path: Path) -> None:
    stores: list[KeyStore] = []
    threads = [
        threading.Thread(target=lambda: stores.append(KeyStore(tmp_path, create=True, algorithm="ES256")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({store.current().active.kid for store in stores}) == 1
    assert sum(store.created for store in stores) == 1
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert KeyStore(tmp_path, create=True, algorithm="ES256").current().active.kid == stores[0].current().active.kid


def test_unreadable_key_file_fails_at_startup(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=KEY_FILE):
        KeyStore(tmp_path, create=False, algorithm="ES256")


def test_store_reloads_a_rotated_file_and_keeps_the_last_good_keys(tmp_path: Path) -> None:
    now = [0.0]
    KeySet.generate().save(tmp_path / KEY_FILE)
    store = KeyStore(tmp_path, create=False, algorithm="ES256", reload_interval=1.0, clock=lambda: now[0])
    before = store.current().active.kid
    rotated = rotate_keys(tmp_path, overlap=600)
    assert store.current().active.kid == before  # not re-checked before the interval
    now[0] = 2.0
    assert store.current().active.kid == rotated.active.kid
    (tmp_path / KEY_FILE).write_text("garbage", encoding="utf-8")
    now[0] = 4.0
    assert store.current().active.kid == rotated.active.kid


def test_rotation_overlap_over_http(start_tts: StartTts, tmp_path: Path) -> None:
    """Tokens signed before and after `txtoken keys rotate` both verify during the overlap; the old key leaves the
    JWKS when the overlap ends."""

    def fast_reload(data: dict[str, object]) -> None:
        data["keys"] = {"dir": str(tmp_path / "keys"), "reload_interval": 0.01}

    tts: Tts = start_tts(fast_reload)
    before = tts.issue()
    old_kid = tts.service.keystore.current().active.kid
    assert main(["keys", "rotate", "--dir", str(tmp_path / "keys"), "--overlap", "3600", "--prepublish", "0"]) == 0
    time.sleep(0.05)
    after = tts.issue()
    verifier = tts.verifier()
    assert verifier.verify(after).kid != old_kid
    assert verifier.verify(before).kid == old_kid
    assert {k["kid"] for k in tts.service.keystore.current().public_jwks()["keys"]} >= {old_kid}

    # End the overlap: rotate again with the old key's retirement in the past.
    data = json.loads((tmp_path / "keys" / KEY_FILE).read_text(encoding="utf-8"))
    data["keys"][1]["retire_at"] = 1
    (tmp_path / "keys" / KEY_FILE).write_text(json.dumps(data), encoding="utf-8")
    time.sleep(0.05)
    fresh = tts.verifier()
    assert fresh.verify(after).kid != old_kid
    with pytest.raises(UnknownKey):
        fresh.verify(before)


def test_keys_rotate_cli_uses_the_config_and_fails_cleanly_without_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tts.toml"
    config.write_text(
        f'identifier = "https://tts.example"\ntrust_domains = ["example"]\n[keys]\ndir = "{tmp_path / "k"}"\n'
        "rotation_overlap = 60\nrotation_prepublish = 30\n",
        encoding="utf-8",
    )
    assert main(["keys", "rotate", "--config", str(config)]) == 1
    assert "no key set" in capsys.readouterr().err
    KeySet.generate().save(tmp_path / "k" / KEY_FILE)
    assert main(["keys", "rotate", "--config", str(config)]) == 0
    keys = KeySet.load(tmp_path / "k" / KEY_FILE)
    assert keys.pending is not None
    assert 0 < keys.pending.activate_at - time.time() <= 31
    assert keys.pending.retire_previous_at - keys.pending.activate_at == 60


def test_keys_rotate_reports_only_the_keys_still_published(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = KeySet.generate()
    old.save(tmp_path / KEY_FILE)
    assert main(["keys", "rotate", "--dir", str(tmp_path), "--overlap", "600", "--prepublish", "0"]) == 0
    assert f"still published: {old.active.kid}" in capsys.readouterr().err
    assert main(["keys", "rotate", "--dir", str(tmp_path), "--overlap", "0", "--prepublish", "0"]) == 0
    published = capsys.readouterr().err.split("still published: ")[1].strip()
    assert old.active.kid in published  # its 600 s overlap still runs
    assert len(published.split(", ")) == 1  # the key retired at once is not listed
