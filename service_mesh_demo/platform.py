"""The demo's platform: it issues every workload its credential, the way a Kubernetes control plane does.

It signs short-lived service-account-style JWTs with its own key, publishes the key as a JWKS file the Txn-Token
Service trusts, and delivers each credential as its workload expects it:

- ``file``: a projected token, ``tokens/NAME/token``, written with the atomic ``..data`` symlink swap the kubelet
  uses, and rotated well before it expires;
- ``env``: ``env/NAME/credential``, which the launcher puts into the workload's environment at start (a static
  credential: the delivery the practices draft discourages in production, shown here for contrast).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service_mesh_demo.common import DemoEnv, serve_http
from service_mesh_demo.topology import BY_NAME, SERVICES, TTS_IDENTIFIER
from txtoken.keys import KeySet
from txtoken.mint import encode_jws

__all__ = ["PLATFORM_ISSUER", "Platform", "service_account"]

PLATFORM_ISSUER = "https://kubernetes.default.svc.cluster.local"
NAMESPACE = "shop"
TOKEN_LIFETIME = 600
ENV_TOKEN_LIFETIME = 3600
ROTATE_AFTER = 0.8  # as the kubelet: rotate once 80 % of the lifetime has passed


def service_account(name: str) -> str:
    """The ``sub`` of a workload's platform credential."""
    return f"system:serviceaccount:{NAMESPACE}:{name}"


class Platform:
    """Keys and credentials under ``data_dir``: ``platform/`` (keys, JWKS), ``tokens/NAME/``, ``env/NAME/``."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        key_file = self.data_dir / "platform" / "keys.json"
        if key_file.exists():
            self.keys = KeySet.load(key_file)
        else:
            self.keys = KeySet.generate()
            self.keys.save(key_file)
        self.jwks_file = self.data_dir / "platform" / "jwks.json"
        self.jwks_file.write_text(json.dumps(self.keys.public_jwks()), encoding="utf-8")
        self._issued: dict[str, float] = {}

    def credential(self, name: str, lifetime: int, audience: str = TTS_IDENTIFIER) -> str:
        now = int(time.time())
        claims = {
            "iss": PLATFORM_ISSUER,
            "sub": service_account(name),
            "aud": [audience],
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {"namespace": NAMESPACE, "serviceaccount": {"name": name}},
        }
        return encode_jws(claims, self.keys.active, typ="JWT")

    def project(self, name: str) -> None:
        """Write a fresh token for ``name`` with the kubelet's atomic swap: ``token -> ..data/token``."""
        folder = self.data_dir / "tokens" / name
        folder.mkdir(parents=True, exist_ok=True)
        version = folder / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{uuid.uuid4().hex[:8]}"
        version.mkdir()
        (version / "token").write_text(self.credential(name, TOKEN_LIFETIME), encoding="utf-8")
        for file_name, audience in BY_NAME[name].extra_tokens.items():  # one projected token per audience
            (version / file_name).write_text(self.credential(name, TOKEN_LIFETIME, audience), encoding="utf-8")
        staged = folder / "..data_tmp"
        staged.unlink(missing_ok=True)
        staged.symlink_to(version.name)
        previous = (folder / "..data").resolve() if (folder / "..data").is_symlink() else None
        os.replace(staged, folder / "..data")
        for file_name in ("token", *BY_NAME[name].extra_tokens):
            if not (folder / file_name).is_symlink():
                (folder / file_name).symlink_to(f"..data/{file_name}")
        if previous is not None and previous != version:
            shutil.rmtree(previous, ignore_errors=True)
        self._issued[name] = time.time()

    def write_env_credential(self, name: str) -> None:
        folder = self.data_dir / "env" / name
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "credential"
        staged = folder / ".credential.tmp"
        staged.write_text(self.credential(name, ENV_TOKEN_LIFETIME), encoding="utf-8")
        os.replace(staged, target)

    def issue_all(self) -> None:
        for service in SERVICES:
            if service.credential == "file":
                self.project(service.name)
            elif service.credential == "env":
                self.write_env_credential(service.name)

    def rotate_due(self) -> None:
        now = time.time()
        for name, issued in list(self._issued.items()):
            if now - issued >= TOKEN_LIFETIME * ROTATE_AFTER:
                self.project(name)


def app(platform: Platform) -> Starlette:
    """Health and the platform's JWKS (also on disk for the Txn-Token Service); rotates tokens while it runs."""

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(platform.keys.public_jwks())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def rotate() -> None:
            while True:
                await asyncio.sleep(5)
                platform.rotate_due()

        task = asyncio.create_task(rotate())
        try:
            yield
        finally:
            task.cancel()

    return Starlette(routes=[Route("/healthz", healthz), Route("/jwks", jwks)], lifespan=lifespan)


def run() -> None:
    env = DemoEnv.load()
    platform = Platform(env.data_dir)
    platform.issue_all()
    serve_http(app(platform), env)
