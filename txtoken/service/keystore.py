"""The TTS signing keys: one key set file, ``keys.json``, in a directory every replica shares.

Replicas never generate keys of their own in production: they all read the same file (a mounted secret or a shared
volume), so their tokens verify against any replica's JWKS. Each replica re-reads the file when it changes, so
``txtoken keys rotate`` reaches all of them. In development mode the first replica to start creates the file once;
the others, and every later start, load it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from txtoken.errors import ConfigurationError
from txtoken.keys import Algorithm, KeySet, SigningKey, VerificationKey
from txtoken.keysource import StaticKeySource

__all__ = ["KEY_FILE", "KeyStore", "KeyStoreKeySource", "rotate_keys"]

KEY_FILE = "keys.json"


def _write_new(path: Path, keys: KeySet) -> bool:
    """Write ``keys`` to ``path`` only if no file is there yet (atomic: link of a complete temporary file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(keys.to_private_jwks(), fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on the key directory, held while the key set file is rewritten."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".keys.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _unwritable(directory: Path, exc: OSError) -> ConfigurationError:
    return ConfigurationError(
        f"cannot write to {directory} ({exc.strerror or type(exc).__name__}): to rotate keys on a read-only mount "
        "(a Kubernetes Secret), write the rotated set to a new directory with --out and publish it as the next version"
    )


def rotate_keys(
    directory: str | os.PathLike[str],
    *,
    overlap: int,
    prepublish: int = 0,
    algorithm: Algorithm | None = None,
    now: float | None = None,
    out: str | os.PathLike[str] | None = None,
) -> KeySet:
    """Add a new key to the key set in ``directory/keys.json``: published at once, signing from ``now +
    prepublish`` on; the key it replaces stays published ``overlap`` seconds after that.

    Without ``out`` the file is rewritten in place (under a lock); with ``out`` the directory is only read (it may be
    a read-only mount) and the rotated set goes to ``out/keys.json``, which must not exist yet.
    """
    source = Path(directory) / KEY_FILE

    def rotated() -> KeySet:
        if not source.exists():
            raise ConfigurationError(f"no key set at {source} to rotate")
        try:
            current = KeySet.load(source)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source}: {exc.message}") from None
        new_key = SigningKey.generate(algorithm or current.active.alg)
        return current.rotate(new_key, overlap=overlap, prepublish=prepublish, now=now)

    if out is not None:
        keys = rotated()
        target = Path(out) / KEY_FILE
        if not _write_new(target, keys):
            raise ConfigurationError(f"{target} already exists: --out takes a new directory")
        return keys
    try:
        with _locked(Path(directory)):
            keys = rotated()
            keys.save(source)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise _unwritable(Path(directory), exc) from None
        raise
    return keys


class KeyStore:
    """The key set in ``directory/keys.json``, re-read at most every ``reload_interval`` seconds.

    The file is compared by content, so any change is seen: a rewrite, a rename, or the atomic ``..data`` symlink
    swap by which the kubelet updates a mounted Secret. Which key signs follows from the file's timestamps and the
    wall clock (``KeySet.at``), never from when this replica read the file, so all replicas switch together. With
    ``create`` (development mode) a missing file is created once with a new ``algorithm`` key; without it a missing
    or unreadable file is a :class:`ConfigurationError`. A file that later becomes unreadable keeps the last good keys.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        create: bool,
        algorithm: Algorithm,
        reload_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(directory) / KEY_FILE
        self.created = False
        self._reload_interval = reload_interval
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        if not self.path.exists():
            if not create:
                raise ConfigurationError(
                    f"no key set at {self.path}: production mode never generates keys per replica "
                    "(create one with 'txtoken keygen --out' and share the directory)"
                )
            self.created = _write_new(self.path, KeySet.generate(algorithm))
        self._raw = b""
        self._checked_at = float("-inf")
        self._stored = self._load()
        self._keys = self._stored
        self._changes_at = float("-inf")
        self._resolve(self._wall_clock())

    def _load(self) -> KeySet:
        try:
            raw = self.path.read_bytes()
            keys = KeySet.parse(raw, origin=str(self.path))
        except OSError as exc:
            raise ConfigurationError(f"cannot read {self.path}: {exc.strerror or type(exc).__name__}") from None
        except ConfigurationError as exc:
            message = exc.message if exc.message.startswith(str(self.path)) else f"{self.path}: {exc.message}"
            raise ConfigurationError(message) from None
        self._raw, self._checked_at = raw, self._clock()
        return keys

    def _resolve(self, now: float) -> None:
        keys = self._stored.at(now)
        change = keys.next_change(now)
        self._keys, self._changes_at = keys, float("inf") if change is None else change

    def current(self) -> KeySet:
        """The key set as it stands now (its active key signs), re-read first if the file changed."""
        if self._clock() - self._checked_at >= self._reload_interval:
            with self._lock:
                self._checked_at = self._clock()
                try:
                    if self.path.read_bytes() != self._raw:
                        self._stored = self._load()
                        self._changes_at = float("-inf")
                except (OSError, ConfigurationError):
                    pass  # keep signing with the last good keys
        now = self._wall_clock()
        if now >= self._changes_at:
            with self._lock:
                self._resolve(now)
        return self._keys


class KeyStoreKeySource:
    """The keys a :class:`KeyStore` publishes, as a key source (to verify the TTS's own tokens on replacement).

    A :class:`~txtoken.keysource.StaticKeySource` of the store's current key set, rebuilt when the store reloads.
    """

    def __init__(self, store: KeyStore) -> None:
        self._store = store
        self._current: tuple[KeySet, StaticKeySource] | None = None

    def _source(self) -> StaticKeySource:
        keys, current = self._store.current(), self._current
        if current is None or current[0] is not keys:
            current = self._current = (keys, StaticKeySource.from_key_set(keys))
        return current[1]

    def cached_key(self, kid: str) -> VerificationKey | None:
        return self._source().cached_key(kid)

    def fetch_key(self, kid: str) -> VerificationKey:
        return self._source().fetch_key(kid)

    async def afetch_key(self, kid: str) -> VerificationKey:
        return self.fetch_key(kid)

    def sole_kid(self, alg: str) -> str | None:
        return self._source().sole_kid(alg)
