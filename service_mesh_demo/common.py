"""What every demo service shares: its environment, its credential, its verifier, its TTS client, how it serves."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.responses import JSONResponse

from service_mesh_demo.topology import TTS_IDENTIFIER
from txtoken.client import AsyncTokenServiceClient
from txtoken.credentials import CredentialSource, EnvCredentialSource, FileCredentialSource, TokenServiceWitSource
from txtoken.errors import KeysUnavailable
from txtoken.keysource import RemoteJwksKeySource
from txtoken.verify import TxnTokenVerifier
from txtoken.wimse import CallerVerifier, WitVerifier, WptVerifier

__all__ = ["DemoEnv", "configure_logging", "prefetch_keys", "readiness", "serve_http"]


@dataclass(frozen=True)
class DemoEnv:
    """The ``DEMO_*`` environment a service was started with (see ``topology.service_env``)."""

    service: str
    trust_domain: str
    host: str
    port: int
    data_dir: Path
    urls: dict[str, str]
    workload_id: str | None
    address: str = ""  # how others reach it (its WPT audience); empty for a service without a workload identity
    log_level: str = "info"

    @classmethod
    def load(cls) -> DemoEnv:
        env = os.environ
        urls = {
            k[len("DEMO_") : -len("_URL")].lower(): v
            for k, v in env.items()
            if k.startswith("DEMO_") and k.endswith("_URL")
        }
        return cls(
            service=env["DEMO_SERVICE"],
            trust_domain=env["DEMO_TRUST_DOMAIN"],
            host=env["DEMO_HOST"],
            port=int(env["DEMO_PORT"]),
            data_dir=Path(env["DEMO_DATA_DIR"]),
            urls=urls,
            workload_id=env.get("DEMO_WORKLOAD_ID"),
            address=env.get("DEMO_ADDRESS", ""),
            log_level=env.get("DEMO_LOG_LEVEL", "info"),
        )

    @property
    def collector(self) -> str:
        """Where hop reports go: the viewer's collector on the gateway."""
        return f"{self.urls['gateway']}/demo/hops"

    def credential(self) -> CredentialSource:
        """The workload's platform credential, as the platform delivers it: a projected file, or the environment."""
        if "DEMO_CREDENTIAL_FILE" in os.environ:
            return FileCredentialSource(os.environ["DEMO_CREDENTIAL_FILE"])
        # Shown for contrast: a static credential in the environment (logged once as discouraged outside development).
        return EnvCredentialSource("DEMO_CREDENTIAL")

    def projected_token(self, name: str) -> Path:
        """A further projected token beside the workload's credential (``Service.extra_tokens``)."""
        return Path(os.environ["DEMO_CREDENTIAL_FILE"]).with_name(name)

    def tts_client(self) -> AsyncTokenServiceClient:
        # Plain http inside the demo's network only (compose hosts are not loopback): use https in production.
        return AsyncTokenServiceClient(
            f"{self.urls['tts']}/token", credential=self.credential(), trust_domain=self.trust_domain, allow_http=True
        )

    def identity(self) -> TokenServiceWitSource:
        """The workload's WIT and key, from the TTS (authenticated with its platform credential), refreshed in time."""
        return TokenServiceWitSource(
            f"{self.urls['tts']}/wit", credential=self.credential(), audience=TTS_IDENTIFIER, allow_http=True
        )

    def callers(self) -> CallerVerifier:
        """Verifies the calling workload's WIT (against the TTS's published WIT keys) and its WPT."""
        anchors = RemoteJwksKeySource(f"{self.urls['tts']}/.well-known/wit-jwks.json", allow_http=True)
        return CallerVerifier(
            WitVerifier(anchors, trust_domain=self.trust_domain, issuers=[TTS_IDENTIFIER]), WptVerifier()
        )

    def tts_keys(self) -> RemoteJwksKeySource:
        """The TTS's published keys (plain http inside the demo's network only: https in production)."""
        return RemoteJwksKeySource(f"{self.urls['tts']}/.well-known/jwks.json", allow_http=True)

    def verifier(self, keys: RemoteJwksKeySource | None = None) -> TxnTokenVerifier:
        """Verifies Txn-Tokens with ``keys`` (default: the TTS's published keys)."""
        return TxnTokenVerifier(keys or self.tts_keys(), trust_domain=self.trust_domain, issuer=TTS_IDENTIFIER)


async def prefetch_keys(keys: RemoteJwksKeySource) -> None:
    """Fetch the TTS's keys before taking traffic; if the TTS is not up yet, the key source keeps retrying and
    :func:`readiness` answers 503 until it has them."""
    try:
        await keys.aprefetch()
    except KeysUnavailable as exc:
        logging.getLogger("service_mesh_demo").warning("starting without the TTS's keys: %s", exc.message)


async def readiness(keys: RemoteJwksKeySource) -> JSONResponse:
    """``/healthz`` of a service that verifies: ready once it holds the TTS's keys (each probe until then fetches)."""
    if not keys.ready():
        with contextlib.suppress(KeysUnavailable):
            await keys.aprefetch()
    if keys.ready():
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "waiting for the TTS's keys"}, status_code=503)


def configure_logging(env: DemoEnv) -> None:
    """One line per event, prefixed with the service; httpx's per-request lines are left out."""
    logging.basicConfig(level=env.log_level.upper(), format=f"{env.service}: %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)


def serve_http(app: Any, env: DemoEnv) -> None:
    """Serve an ASGI app with uvicorn; one log line per service start, access logs off (they would be noise)."""
    configure_logging(env)
    uvicorn.run(app, host=env.host, port=env.port, log_level="warning", access_log=False, proxy_headers=False)
