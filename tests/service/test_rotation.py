"""Key rotation without a failure window (issue 10): a new key is published before it signs, replicas switch together
from the file's timestamps, a read-only Secret mount is rotated into a new directory, and the kubelet's ``..data``
swap reaches every replica."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from txtoken.cli import main
from txtoken.errors import ConfigurationError, TxTokenError
from txtoken.jws import b64url_decode
from txtoken.keys import KeySet, SigningKey
from txtoken.keysource import RemoteJwksKeySource
from txtoken.service import KeyStore, rotate_keys
from txtoken.service.keystore import KEY_FILE
from txtoken.verify import TxnTokenVerifier

from .conftest import IDENTIFIER, TRUST_DOMAIN, StartTts

NOW = 1_800_000_000


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_replicas_switch_at_the_file_time_not_when_they_read_the_file(tmp_path: Path) -> None:
    """issue 10: each replica switched to the new key when it happened to reload the file, so replicas disagreed on
    the active key. Two replicas that read the file at different moments sign with the same key at every moment."""
    wall, early_mono, late_mono = Clock(NOW), Clock(0), Clock(0)
    KeySet.generate().save(tmp_path / KEY_FILE)
    early = KeyStore(tmp_path, create=False, algorithm="ES256", reload_interval=1, clock=early_mono, wall_clock=wall)
    late = KeyStore(tmp_path, create=False, algorithm="ES256", reload_interval=3600, clock=late_mono, wall_clock=wall)
    old = early.current().active.kid
    rotated = rotate_keys(tmp_path, overlap=600, prepublish=300, now=NOW)
    assert rotated.pending is not None
    new = rotated.pending.key.kid
    early_mono.now = 1  # the early replica re-reads the file now
    assert {k["kid"] for k in early.current().public_jwks(wall())["keys"]} == {old, new}  # published at once
    assert late.current().active.kid == early.current().active.kid == old  # ...but not signing yet
    assert late.current().pending is None  # the late replica has not read the file yet
    late_mono.now = 3600  # it reads it now, long after the early one
    assert late.current().pending is not None
    wall.now = NOW + 299
    assert late.current().active.kid == early.current().active.kid == old
    wall.now = NOW + 300  # neither replica re-reads the file: the switch follows from its timestamps
    assert late.current().active.kid == early.current().active.kid == new
    wall.now = NOW + 900
    assert [k.kid for k in late.current().verification_keys(wall())] == [new]


def _secret_volume(mount: Path, keys: KeySet) -> None:
    """A Kubernetes Secret volume as the kubelet lays it out: ``keys.json -> ..data/keys.json``, ``..data -> ..TS``."""
    _publish_version(mount, keys)
    (mount / KEY_FILE).symlink_to(f"..data/{KEY_FILE}")


def _publish_version(mount: Path, keys: KeySet) -> None:
    """The kubelet's update: a new timestamped directory, then an atomic rename of the ``..data`` symlink."""
    version = mount / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{uuid.uuid4().hex[:8]}"
    version.mkdir()
    keys.save(version / KEY_FILE)
    previous = (mount / "..data").resolve() if (mount / "..data").is_symlink() else None
    (mount / "..data_tmp").symlink_to(version.name)
    os.replace(mount / "..data_tmp", mount / "..data")
    if previous is not None:
        shutil.rmtree(previous)


def test_keystore_notices_the_kubelet_data_symlink_swap(tmp_path: Path) -> None:
    mount = tmp_path / "secret"
    mount.mkdir()
    first = KeySet.generate()
    _secret_volume(mount, first)
    mono = Clock(0)
    store = KeyStore(mount, create=False, algorithm="ES256", reload_interval=2, clock=mono)
    assert store.current().active.kid == first.active.kid
    second = first.rotate(SigningKey.generate(), overlap=600, prepublish=0)
    _publish_version(mount, second)
    assert store.current().active.kid == first.active.kid  # not re-checked before the interval
    mono.now = 2
    assert store.current().active.kid == second.active.kid


def _tree(root: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every entry under ``root``: symlink targets and file contents (a read-only mount must stay as it was)."""
    tree: dict[str, tuple[str, bytes | str]] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            tree[name] = ("link", os.readlink(path))
        elif path.is_file():
            tree[name] = ("file", path.read_bytes())
        else:
            tree[name] = ("dir", "")
    return tree


@pytest.fixture
def read_only_secret(tmp_path: Path) -> Iterator[Path]:
    """A Secret volume on a real read-only mount (a tmpfs remounted read-only)."""
    mount = tmp_path / "secret"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs CAP_SYS_ADMIN, which this machine does not grant")
    try:
        _secret_volume(mount, KeySet.generate())
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True, capture_output=True)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True, capture_output=True)


def test_keys_rotate_out_rotates_a_read_only_secret_into_a_new_directory(
    read_only_secret: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _tree(read_only_secret)
    current = KeySet.load(read_only_secret / KEY_FILE)
    assert main(["keys", "rotate", "--dir", str(read_only_secret), "--prepublish", "60"]) == 1
    err = capsys.readouterr().err
    assert "Read-only file system" in err and "--out" in err  # in place is impossible, and says what to do
    out = tmp_path / "next"
    assert main(["keys", "rotate", "--dir", str(read_only_secret), "--out", str(out), "--prepublish", "60"]) == 0
    assert f"in {out / KEY_FILE}" in capsys.readouterr().err
    assert _tree(read_only_secret) == before
    rotated = KeySet.load(out / KEY_FILE)
    assert rotated.active.kid == current.active.kid and rotated.pending is not None
    assert (out / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert main(["keys", "rotate", "--dir", str(read_only_secret), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err  # never overwrites a key file


def test_rotated_set_becomes_the_next_secret_version_and_reaches_the_store(tmp_path: Path) -> None:
    """The read-only flow end to end: rotate --out, publish it as the next Secret version, the replica follows."""
    mount = tmp_path / "secret"
    mount.mkdir()
    _secret_volume(mount, KeySet.generate())
    wall, mono = Clock(time.time()), Clock(0)
    store = KeyStore(mount, create=False, algorithm="ES256", reload_interval=1, clock=mono, wall_clock=wall)
    old = store.current().active.kid
    rotated = rotate_keys(mount, overlap=600, prepublish=120, out=tmp_path / "next")
    assert rotated.pending is not None
    _publish_version(mount, KeySet.load(tmp_path / "next" / KEY_FILE))
    mono.now = 1
    assert {k.kid for k in store.current().verification_keys(wall())} == {old, rotated.pending.key.kid}
    assert store.current().active.kid == old
    wall.now = rotated.pending.activate_at
    assert store.current().active.kid == rotated.pending.key.kid


def test_keys_rotate_prints_the_timeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    KeySet.generate().save(tmp_path / KEY_FILE)
    old = KeySet.load(tmp_path / KEY_FILE).active.kid
    assert main(["keys", "rotate", "--dir", str(tmp_path), "--prepublish", "120", "--overlap", "600"]) == 0
    lines = capsys.readouterr().err.splitlines()
    new = KeySet.load(tmp_path / KEY_FILE).pending
    assert new is not None
    assert lines[0].startswith(f"new key {new.key.kid} (ES256) in {tmp_path / KEY_FILE}")
    assert lines[1].endswith(f"(now): {new.key.kid} published, not signing yet; {old} signs")
    assert lines[2].endswith(f"(+120 s): {new.key.kid} signs; {old} still published")
    assert lines[3].endswith(f"(+720 s): {old} no longer published")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(new.activate_at))
    assert lines[2].lstrip().startswith(stamp)


def test_rotate_without_a_key_set_or_with_a_broken_one_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no key set"):
        rotate_keys(tmp_path, overlap=60, out=tmp_path / "next")
    (tmp_path / KEY_FILE).write_text("{", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=str(tmp_path / KEY_FILE)):
        rotate_keys(tmp_path, overlap=60)


# --- under load -------------------------------------------------------------------------------------------------


def test_rotations_under_load_refuse_no_token(start_tts: StartTts, tmp_path: Path) -> None:
    """issue 10: key rotation broke verifiers for up to 30 s (14,539 of 24,055 fresh tokens refused with three
    rotations in 95 s). Two replicas share the key directory, one re-reads it often and one seldom; workers take
    tokens from both and verify them with a RemoteJwksKeySource on the slow replica's JWKS, while the keys rotate
    three times; tokens of the previous key are verified again during its overlap. Nothing is refused."""
    key_dir = tmp_path / "keys"
    prepublish, overlap = 2, 4  # seconds; the verifier's cache TTL (0.3 s) plus the slow reload (0.5 s) fit in 2

    def reload_every(seconds: float) -> Callable[[dict[str, Any]], None]:
        def change(data: dict[str, Any]) -> None:
            data["keys"] = {"dir": str(key_dir), "reload_interval": seconds}

        return change

    fast = start_tts(reload_every(0.02), key_dir=key_dir)
    slow = start_tts(reload_every(0.5), key_dir=key_dir)
    source = RemoteJwksKeySource(f"{slow.url}/.well-known/jwks.json", allow_http=True, ttl=0.3, min_ttl=0)
    verifier = TxnTokenVerifier(source, trust_domain=TRUST_DOMAIN, issuer=IDENTIFIER, cache_size=0)

    lock = threading.Lock()
    stop = threading.Event()
    latest: dict[str, str] = {}  # kid -> a token it signed
    refused: list[str] = []
    verified: dict[str, int] = {}
    old_in_overlap = [0]

    def work(replica_index: int) -> None:
        replicas = (fast, slow)
        n = replica_index
        while not stop.is_set():
            n += 1
            token = replicas[n % 2].issue()
            try:
                kid = verifier.verify(token).kid
            except TxTokenError as exc:
                with lock:
                    refused.append(f"new token: {exc.code}")
                continue
            keys = KeySet.load(key_dir / KEY_FILE).at()
            retiring = {p.key.kid: p.retire_at for p in keys.previous if p.retire_at is not None}
            with lock:
                verified[kid] = verified.get(kid, 0) + 1
                latest[kid] = token
                olds = [t for k, t in latest.items() if k in retiring and time.time() < retiring[k] - 1]
            for old_token in olds:
                try:
                    verifier.verify(old_token)
                except TxTokenError as exc:
                    with lock:
                        refused.append(f"old token in its overlap: {exc.code}")
                else:
                    with lock:
                        old_in_overlap[0] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(3):
            rotated = rotate_keys(key_dir, overlap=overlap, prepublish=prepublish)
            assert rotated.pending is not None
            new_kid = rotated.pending.key.kid
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and verified.get(new_kid, 0) < 20:  # the new key has signed
                time.sleep(0.05)
            assert verified.get(new_kid, 0) >= 20, f"no tokens of the new key verified ({refused[:3]})"
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert refused == []
    assert len(verified) == 4 and sum(verified.values()) >= 80
    assert old_in_overlap[0] > 0


def test_mint_signs_with_the_key_the_file_times_make_active(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    now = time.time()
    KeySet(old).rotate(new, overlap=600, prepublish=60, now=now - 120).save(tmp_path / KEY_FILE)  # switched 60 s ago
    args = ["mint", "--keys", str(tmp_path / KEY_FILE), "--trust-domain", TRUST_DOMAIN, "--sub", "s", "--scope", "a"]
    assert main([*args, "--req-wl", "w"]) == 0
    token = capsys.readouterr().out.strip()
    assert json.loads(b64url_decode(token.split(".")[0]))["kid"] == new.kid
