"""The worst case of a verifier's remote JWKS during key rotation, measured on loopback with real components.

A uvicorn server publishes the JWKS of a real :class:`~txtoken.service.KeyStore` (as the TTS does). A verifier with
a :class:`~txtoken.keysource.RemoteJwksKeySource` (scaled-down intervals: ``ttl`` 4 s, ``min_refresh_interval``
2 s, ``refresh_burst`` 3) verifies a steady stream of tokens of the active key while ``txtoken keys rotate``
happens, in four scenarios:

1. no pre-publication, no flood: the bucket picks the new key up at its first token;
2. no pre-publication, during a flood of tokens with made-up ``kid`` values (the bucket is empty): the new key is
   refused until the next refill, at most ``min_refresh_interval`` (the worst case);
3. pre-publication longer than the verifier's ``ttl``, during the same flood: nothing refused;

and counts the JWKS fetches at the server (a flood costs the burst, then one per interval).

    python benchmarks/rotation.py
"""

from __future__ import annotations

import base64
import contextlib
import json
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from txtoken import RemoteJwksKeySource, TxnTokenMinter, TxnTokenVerifier
from txtoken.errors import TxTokenError
from txtoken.jws import b64url_decode
from txtoken.keys import KeySet
from txtoken.service import KeyStore, rotate_keys
from txtoken.service.keystore import KEY_FILE

TRUST_DOMAIN = "bench.example"
TTL, INTERVAL, BURST = 4.0, 2.0, 3


@dataclass
class Server:
    store: KeyStore
    fetches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def jwks(self, request: Request) -> Response:
        with self.lock:
            self.fetches += 1
        return JSONResponse(self.store.current().public_jwks(), headers={"Cache-Control": "public, max-age=60"})


def _start(app: Starlette) -> tuple[uvicorn.Server, str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def _made_up(token: str, n: int) -> str:
    """``token`` with the header's ``kid`` replaced (its signature no longer matters: the key lookup fails first)."""
    header, payload, signature = token.split(".")
    fields = json.loads(b64url_decode(header))
    fields["kid"] = f"made-up-{n}"
    encoded = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    return f"{encoded}.{payload}.{signature}"


def scenario(name: str, *, prepublish: int, flood: bool) -> dict[str, object]:
    directory = Path(tempfile.mkdtemp())
    KeySet.generate().save(directory / KEY_FILE)
    store = KeyStore(directory, create=False, algorithm="ES256", reload_interval=0.05)
    endpoint = Server(store)
    uv, url = _start(Starlette(routes=[Route("/jwks", endpoint.jwks)]))
    source = RemoteJwksKeySource(
        f"{url}/jwks", allow_http=True, ttl=TTL, min_ttl=TTL, min_refresh_interval=INTERVAL, refresh_burst=BURST
    )
    verifier = TxnTokenVerifier(source, trust_domain=TRUST_DOMAIN, cache_size=0)
    stop = threading.Event()
    refused: list[float] = []
    first_new: list[float] = []
    accepted_new: list[float] = []
    new_kid: list[str] = []
    sprayed = [0]

    def load() -> None:
        while not stop.is_set():
            minter = TxnTokenMinter(store.current(), trust_domain=TRUST_DOMAIN)
            token = minter.mint(sub="u", scope="s", req_wl="w")
            is_new = bool(new_kid) and minter.keys.active.kid == new_kid[0]
            if is_new and not first_new:
                first_new.append(time.monotonic())
            try:
                verifier.verify(token)
                if is_new and not accepted_new:
                    accepted_new.append(time.monotonic())
            except TxTokenError:
                refused.append(time.monotonic())
            time.sleep(0.002)

    def spray() -> None:
        base = TxnTokenMinter(store.current(), trust_domain=TRUST_DOMAIN).mint(sub="u", scope="s", req_wl="w")
        while not stop.is_set():
            sprayed[0] += 1
            with contextlib.suppress(TxTokenError):
                verifier.verify(_made_up(base, sprayed[0]))

    threads = [threading.Thread(target=load)] + ([threading.Thread(target=spray)] if flood else [])
    source.prefetch()
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    fetches_before = endpoint.fetches
    rotated = rotate_keys(directory, overlap=60, prepublish=prepublish)
    new_kid.append(rotated.pending.key.kid if rotated.pending else rotated.active.kid)
    deadline = time.monotonic() + prepublish + TTL + INTERVAL + 5
    while time.monotonic() < deadline and not accepted_new:
        time.sleep(0.05)
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join()
    uv.should_exit = True
    window = accepted_new[0] - first_new[0] if accepted_new and first_new else float("nan")
    return {
        "scenario": name,
        "tokens refused": len(refused),
        "new key's first token accepted after (s)": round(window, 2),
        "made-up kids": sprayed[0],
        "JWKS fetches in all": endpoint.fetches,
        "from 1 s before the rotation": endpoint.fetches - fetches_before,
    }


def main() -> None:
    results = [
        scenario("1. prepublish 0, no flood", prepublish=0, flood=False),
        scenario("2. prepublish 0, kid flood", prepublish=0, flood=True),
        scenario(f"3. prepublish {int(TTL) + 1} s, kid flood", prepublish=int(TTL) + 1, flood=True),
    ]
    print(f"ttl {TTL} s, min_refresh_interval {INTERVAL} s, refresh_burst {BURST}")
    for result in results:
        print("  " + "; ".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
