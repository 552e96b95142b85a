"""A credential in a file: the Kubernetes projected service-account token, and any file a platform agent rotates.

Every call checks the file (one ``stat``, following symlinks) and reads it again when it changed: rewritten in place,
replaced by a rename, or swapped in by the atomic ``..data`` symlink flip Kubernetes uses for projected volumes (the
path then resolves to a new inode). A file changed within the last two seconds is read on every call, since a
rewrite inside one tick of the file system's clock could leave its stat signature unchanged. The cached content is
never served past the JWT's ``exp``, and a file that has gone or cannot be read is an error, never a stale token.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from txtoken.credentials._cache import DEFAULT_REFRESH_MARGIN, CredentialCache
from txtoken.credentials._jwt import jwt_credential
from txtoken.credentials.base import Credential
from txtoken.errors import ConfigurationError, CredentialUnavailable

__all__ = ["KUBERNETES_TOKEN_PATH", "MAX_CREDENTIAL_FILE_SIZE", "FileCredentialSource"]

#: The default service-account token of a pod. Its audience is the API server: for the TTS, project a token with
#: the TTS as audience into a volume of its own (see docs/credentials.md).
KUBERNETES_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"
#: A credential file larger than this is refused rather than read.
MAX_CREDENTIAL_FILE_SIZE = 64 * 1024

_SETTLE_SECONDS = 2.0


class _Signature(NamedTuple):
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


class FileCredentialSource:
    """The credential in the file at ``path``, fixed by configuration.

    With ``jwt=True`` (the default) the content must be a JWT with an ``exp``; with ``jwt=False`` it is an opaque
    string without a known expiry. Surrounding whitespace (a trailing newline) is stripped.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        jwt: bool = True,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not os.fspath(path):
            raise ConfigurationError("the credential file path is empty")
        self.path = Path(path)
        self._jwt = jwt
        self._clock = clock
        self._cache: CredentialCache[None] = CredentialCache(refresh_margin=refresh_margin, clock=clock)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def get(self) -> Credential:
        return self._cache.get(None, self._read, tag=self._tag())

    async def aget(self) -> Credential:
        return await self._cache.aget(None, self._read, tag=self._tag())

    def _tag(self) -> object:
        """The file's stat signature, or a fresh object (never equal to a cached tag) while the file may be changing."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise self._unavailable(exc) from None
        if time.time() - st.st_ctime < _SETTLE_SECONDS:
            return object()
        return _Signature(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _read(self) -> Credential:
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read(MAX_CREDENTIAL_FILE_SIZE + 1)
        except OSError as exc:
            raise self._unavailable(exc) from None
        if len(raw) > MAX_CREDENTIAL_FILE_SIZE:
            raise CredentialUnavailable(f"the credential file {self.path} is larger than {MAX_CREDENTIAL_FILE_SIZE} B")
        try:
            value = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise CredentialUnavailable(f"the credential file {self.path} is not UTF-8 text") from None
        if not value:
            raise CredentialUnavailable(f"the credential file {self.path} is empty")
        if not self._jwt:
            return Credential(value)
        return jwt_credential(value, origin=f"the credential file {self.path}", now=self._clock())

    def _unavailable(self, exc: OSError) -> CredentialUnavailable:
        if isinstance(exc, FileNotFoundError):
            reason = "does not exist: check the path and that the volume holding it is mounted"
        elif isinstance(exc, PermissionError):
            reason = "cannot be read by this process (permission denied)"
        elif isinstance(exc, IsADirectoryError):
            reason = "is a directory, not a file"
        else:
            reason = f"cannot be read ({exc.strerror or type(exc).__name__})"
        return CredentialUnavailable(f"the credential file {self.path} {reason}")
