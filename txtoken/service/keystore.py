"""The TTS signing keys: one key set file, ``keys.json``, in a directory every replica shares.

Replicas never generate keys of their own in production: they all read the same file (a mounted secret or a shared
volume), so their tokens verify against any replica's JWKS. Each replica re-reads the file when it changes, so
``txtoken keys rotate`` reaches all of them. In development mode the first replica to start creates the file once;
the others, and every later start, load it.
"""

from __future__ import annotations

import contextlib
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


def rotate_keys(
    directory: str | os.PathLike[str], *, overlap: int, algorithm: Algorithm | None = None, now: float | None = None
) -> KeySet:
    """Make a new key active in ``directory/keys.json``; the old one stays published for ``overlap`` seconds."""
    path = Path(directory) / KEY_FILE
    with _locked(Path(directory)):
        if not path.exists():
            raise ConfigurationError(f"no key set at {path} to rotate")
        current = KeySet.load(path)
        rotated = current.rotate(SigningKey.generate(algorithm or current.active.alg), overlap=overlap, now=now)
        rotated.save(path)
    return rotated


class KeyStore:
    """The key set in ``directory/keys.json``, re-read at most every ``reload_interval`` seconds when it changed.

    With ``create`` (development mode) a missing file is created once with a new ``algorithm`` key; without it a
    missing or unreadable file is a :class:`ConfigurationError`. A file that later becomes unreadable keeps the last
    good keys.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        create: bool,
        algorithm: Algorithm,
        reload_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(directory) / KEY_FILE
        self.created = False
        self._reload_interval = reload_interval
        self._clock = clock
        self._lock = threading.Lock()
        if not self.path.exists():
            if not create:
                raise ConfigurationError(
                    f"no key set at {self.path}: production mode never generates keys per replica "
                    "(create one with 'txtoken keygen --out' and share the directory)"
                )
            self.created = _write_new(self.path, KeySet.generate(algorithm))
        self._stamp: tuple[int, int, int] | None = None
        self._checked_at = float("-inf")
        self._keys = self._load()

    def _file_stamp(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _load(self) -> KeySet:
        try:
            stamp = self._file_stamp()
            keys = KeySet.load(self.path)
        except OSError as exc:
            raise ConfigurationError(f"cannot read {self.path}: {exc.strerror or type(exc).__name__}") from None
        except ConfigurationError as exc:
            raise ConfigurationError(f"{self.path}: {exc.message}") from None
        self._stamp, self._checked_at = stamp, self._clock()
        return keys

    def current(self) -> KeySet:
        """The key set, reloaded first if the file changed since the last check."""
        if self._clock() - self._checked_at < self._reload_interval:
            return self._keys
        with self._lock:
            self._checked_at = self._clock()
            try:
                if self._file_stamp() != self._stamp:
                    self._keys = self._load()
            except (OSError, ConfigurationError):
                pass  # keep signing with the last good keys
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
