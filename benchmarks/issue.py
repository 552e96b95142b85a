"""Txn-Token issuance through the full HTTP endpoint, against a bare Starlette POST endpoint on the same server.

One uvicorn process (one worker) serves the TTS's ``POST /token``, the same TTS with its verified-token cache off at
``POST /nocache/token``, and a bare ``POST /bare`` that reads the same body and answers a small JSON document. A load
generator on loopback (asyncio, raw HTTP/1.1 keep-alive connections, so that the client costs little of the shared
CPU) measures, in one run:

1. the rate and p50/p99 latency of each variant at a fixed concurrency (closed loop), the variants interleaved in
   rounds; a ratio is the median over rounds of (rate / bare rate in the same round). Goal: ``token`` >= 0.5;
2. p99 latency of ``/token`` at half its peak rate (open loop: latency counts from when the load generator starts
   a request, waiting for a free connection included; the generator's own lag is reported apart), beside a bare
   control at the same rate. Goal: under 2 ms;
3. with ``--workers N``, a second server with N uvicorn workers, measured in the same rounds.

Each request is a gateway's exchange: an ES256 client assertion for a registered key pair and an ES256 RFC 9068
access token as subject, both verified, then an ES256 Txn-Token signed. Results are printed and written, with the
command, into the "Token issuance" section of ``docs/performance.md``.

    python benchmarks/issue.py [--rounds 5] [--seconds 1] [--concurrency 8] [--workers 2] [--no-doc]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
HEADING = "## Token issuance"
TRUST_DOMAIN = "bench.example"
IDENTIFIER = "https://tts.bench.example"
GATEWAY = "spiffe://bench.example/gateway"
IDP = "https://idp.bench.example"
API = "https://api.bench.example"
SPIRE = "https://spire.bench.example"


# --- the server (run in a subprocess with --serve) ----------------------------------------------------------------


def build_app(config: Path) -> Any:
    """The TTS app with a bare ``POST /bare`` beside it, and ``POST /nocache/token``: the same TTS built with its
    verified-token cache off, so that what the cache buys is measured on the same server, in the same run."""
    import logging

    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Mount, Route

    from txtoken.service import create_app, load_settings

    async def bare(request: Request) -> Response:
        body = await request.body()
        return JSONResponse({"received": len(body)}, headers={"Cache-Control": "no-store"})

    # The audit lines are written, as `txtoken serve` writes them (here to a file beside the configuration).
    if not logging.getLogger().handlers:
        audit = logging.FileHandler(config.parent / "audit.log")
        logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[audit])
    settings = load_settings(config)
    uncached = create_app(settings.model_copy(update={"verified_token_cache": 0}))
    app = create_app(settings, freeze_gc=True)  # as `txtoken serve` does
    app.router.routes.insert(0, Route("/bare", bare, methods=["POST"]))
    app.router.routes.insert(0, Mount("/nocache", app=uncached))
    return app


def app_from_env() -> Any:
    """For uvicorn's worker processes (``--workers`` > 1 needs an importable factory)."""
    return build_app(Path(os.environ["TXTOKEN_BENCH_CONFIG"]))


def serve(config: Path, port: int, workers: int) -> None:
    import uvicorn

    options: dict[str, Any] = {"host": "127.0.0.1", "port": port, "log_level": "warning", "access_log": False}
    options["proxy_headers"] = False
    if workers == 1:
        uvicorn.run(build_app(config), **options)
        return
    from txtoken.service.nodelay import HTTP_PROTOCOL

    os.environ["TXTOKEN_BENCH_CONFIG"] = str(config)
    sys.path.insert(0, str(ROOT))
    # as `txtoken serve --workers N` does (txtoken/service/nodelay.py); TXTOKEN_BENCH_NAGLE=1: without it
    options["http"] = "h11" if os.environ.get("TXTOKEN_BENCH_NAGLE") else HTTP_PROTOCOL
    uvicorn.run("benchmarks.issue:app_from_env", factory=True, workers=workers, **options)


# --- setup ---------------------------------------------------------------------------------------------------------


@dataclass
class Setup:
    """The configuration; a request whose client assertion is the gateway's JWT-SVID (a platform credential, reused
    until it expires, so the TTS may cache its verification); and fresh requests with key-pair assertions (one ``jti``
    each, single-use at the TTS)."""

    config: Path
    body: bytes
    key_pair_bodies: Callable[[], bytes]


def prepare(directory: Path) -> Setup:
    from txtoken.claims import (
        CLIENT_ASSERTION_TYPE_JWT_BEARER,
        GRANT_TYPE_TOKEN_EXCHANGE,
        TOKEN_TYPE_ACCESS_TOKEN,
        TOKEN_TYPE_TXN_TOKEN,
    )
    from txtoken.keys import KeySet, SigningKey
    from txtoken.mint import encode_jws

    KeySet.generate().save(directory / "keys" / "keys.json")
    gateway, idp, spire = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    config = {
        "identifier": IDENTIFIER,
        "trust_domains": [TRUST_DOMAIN],
        "keys": {"dir": str(directory / "keys")},
        "issuers": {
            "idp": {
                "kind": "oauth",
                "issuer": IDP,
                "jwks": {"keys": [idp.verification_key.to_jwk()]},
                "audiences": [API],
            },
            "spire": {
                "kind": "spiffe",
                "issuer": SPIRE,
                "spiffe_trust_domain": TRUST_DOMAIN,
                "roles": ["client_assertion"],
                "jwks": {"keys": [spire.verification_key.to_jwk()]},
            },
        },
        "workloads": [
            {
                "id": GATEWAY,
                "authn": [
                    {"method": "key", "jwks": {"keys": [gateway.verification_key.to_jwk()]}},
                    {"method": "jwt", "issuer": "spire", "claims": {"sub": GATEWAY}},
                ],
                "subject_token_types": ["access_token"],
                "scopes": ["trade.stocks", "trade.read"],
                "rctx": ["req_ip", "authn"],
                "tctx": ["action", "ticker", "quantity"],
            }
        ],
    }
    toml = directory / "tts.toml"
    toml.write_text(_to_toml(config), encoding="utf-8")
    now = int(time.time())
    life = 3600
    access = encode_jws(
        {
            "iss": IDP,
            "sub": "alice",
            "aud": API,
            "client_id": "web",
            "iat": now,
            "exp": now + life,
            "jti": str(uuid.uuid4()),
            "scope": "trade.stocks trade.read",
        },
        idp,
        typ="at+jwt",
    )
    svid = encode_jws({"iss": SPIRE, "sub": GATEWAY, "aud": IDENTIFIER, "iat": now, "exp": now + 900}, spire, typ="JWT")
    form = {
        "grant_type": GRANT_TYPE_TOKEN_EXCHANGE,
        "requested_token_type": TOKEN_TYPE_TXN_TOKEN,
        "audience": TRUST_DOMAIN,
        "scope": "trade.stocks",
        "subject_token": access,
        "subject_token_type": TOKEN_TYPE_ACCESS_TOKEN,
        "request_context": json.dumps({"req_ip": "69.151.72.123", "authn": "face"}),
        "request_details": json.dumps({"action": "BUY", "ticker": "MSFT", "quantity": "100"}),
        "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": svid,
    }

    def key_pair_body() -> bytes:
        issued = int(time.time())
        claims = {"iss": GATEWAY, "sub": GATEWAY, "aud": IDENTIFIER, "iat": issued, "exp": issued + 240}
        assertion = encode_jws({**claims, "jti": str(uuid.uuid4())}, gateway, typ="JWT")
        return urlencode({**form, "client_assertion": assertion}).encode()

    return Setup(toml, urlencode(form).encode(), key_pair_body)


def _to_toml(config: dict[str, Any]) -> str:
    """A TOML rendering of the benchmark configuration (JSON values are valid TOML inline values here)."""
    lines = []
    for key, value in config.items():
        lines.append(f"{key} = {_inline(value)}")
    return "\n".join(lines) + "\n"


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_inline(v)}' for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return json.dumps(value)


# --- the load generator --------------------------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection that sends one prepared request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def roundtrip(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        await self.writer.drain()
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def http_request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Result:
    requests: int
    seconds: float
    latencies_ms: list[float]
    #: open loop only: how late the load generator started each request (its own lag, not the server's), and the
    #: latencies counted from each request's schedule (that lag included)
    lags_ms: list[float] = field(default_factory=list)
    from_schedule_ms: list[float] = field(default_factory=list)
    #: the server's CPU time per request (closed loop, one-worker server)
    server_cpu_us: float = 0.0
    #: the share of one CPU the load generator's process used during the run
    generator_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float, values: list[float] | None = None) -> float:
        ordered = sorted(self.latencies_ms if values is None else values)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def closed_loop(
    port: int, request: bytes | Iterator[bytes], *, concurrency: int, count: int, seconds: float
) -> Result:
    """``concurrency`` connections, each sending its next request as soon as the last answer arrives; ``request`` is
    one request sent again and again, or an iterator of distinct ones (the run ends early when it runs out)."""
    requests = itertools.repeat(request) if isinstance(request, bytes) else request
    connections = [await Connection.open(port) for _ in range(concurrency)]
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    remaining = [count]

    async def worker(connection: Connection) -> None:
        for next_request in requests:
            if remaining[0] <= 0 or time.perf_counter() >= deadline:
                break
            remaining[0] -= 1
            start = time.perf_counter()
            status, _ = await connection.roundtrip(next_request)
            if status != 200:
                raise RuntimeError(f"status {status}")
            latencies.append((time.perf_counter() - start) * 1000)

    cpu = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    for connection in connections:
        connection.close()
    return Result(len(latencies), elapsed, latencies, generator_cpu=cpu / elapsed)


async def open_loop(
    port: int, request: bytes | Iterator[bytes], *, rate: float, connections: int, seconds: float
) -> Result:
    """Requests scheduled at a fixed ``rate``, each sent on a free connection (waiting for one if all are busy): the
    same ``request`` each time, or the next of an iterator, made when the request starts.

    Latency counts from the moment the load generator starts a request, waiting for a connection included. The
    generator's own lag (how late it starts a request: asyncio's timers wake up to 1 ms late, and other processes
    delay it) is recorded apart, and so is the latency counted from the schedule, which includes that lag."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await Connection.open(port))
    requests = itertools.repeat(request) if isinstance(request, bytes) else request
    latencies: list[float] = []
    lags: list[float] = []
    count = int(rate * seconds)
    cpu = time.process_time()
    start = time.perf_counter()

    from_schedule: list[float] = []

    async def one(scheduled: float) -> None:
        started = time.perf_counter()
        lags.append((started - scheduled) * 1000)
        connection = await pool.get()
        try:
            status, _ = await connection.roundtrip(next(requests))
        finally:
            pool.put_nowait(connection)
        if status != 200:
            raise RuntimeError(f"status {status}")
        done = time.perf_counter()
        latencies.append((done - started) * 1000)
        from_schedule.append((done - scheduled) * 1000)

    tasks = []
    for i in range(count):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    while not pool.empty():
        pool.get_nowait().close()
    return Result(len(latencies), elapsed, latencies, lags, from_schedule, generator_cpu=cpu / elapsed)


# --- the run -------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("the server did not start")


def _check_token(url: str, setup_body: bytes) -> int:
    """Issue one token over HTTP and verify it against the server's JWKS: the benchmark measures real issuance."""
    from txtoken.keysource import RemoteJwksKeySource
    from txtoken.verify import TxnTokenVerifier

    response = httpx.post(
        f"{url}/token", content=setup_body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    response.raise_for_status()
    token = response.json()["access_token"]
    verifier = TxnTokenVerifier(
        RemoteJwksKeySource(f"{url}/.well-known/jwks.json", allow_http=True), trust_domain=TRUST_DOMAIN
    )
    assert verifier.verify(token).tctx == {"action": "BUY", "ticker": "MSFT", "quantity": "100"}
    return len(token)


#: variant -> (path, server): the server is "one" (one worker) or "many" (``--workers``)
#: The variant whose requests carry fresh key-pair assertions (a new jti each) instead of the JWT-SVID.
KEY_PAIR = "token, key-pair assertion"
VARIANTS = {
    "bare": ("/bare", "one"),
    "token": ("/token", "one"),
    "token, cache off": ("/nocache/token", "one"),
    KEY_PAIR: ("/token", "one"),
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``; 0 where it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    ports: dict[str, int], server_pid: int, body: bytes, key_pair_requests: list[bytes], args: argparse.Namespace
) -> dict[str, list[Result]]:
    """Closed-loop runs of every variant, interleaved in rounds; then the half-peak run (open loop) of ``token``.
    For the one-worker server (``server_pid``) each closed-loop run also records the server's CPU time per request."""
    variants = dict(VARIANTS)
    if "many" in ports:
        variants[f"token, {args.workers} workers"] = ("/token", "many")
        variants[f"bare, {args.workers} workers"] = ("/bare", "many")
    # The load generator is not what is measured: keep its own garbage collector from pausing it mid-run.
    gc.collect()
    gc.freeze()
    gc.disable()
    results: dict[str, list[Result]] = {name: [] for name in variants}
    key_pair = iter(key_pair_requests)

    def request_of(name: str, path: str) -> bytes | Iterator[bytes]:
        return key_pair if name == KEY_PAIR else http_request(path, body)

    for name, (path, server) in variants.items():  # warm-up
        request = request_of(name, path)
        await closed_loop(ports[server], request, concurrency=args.concurrency, count=args.warmup, seconds=10)
    for _ in range(args.rounds):
        for name, (path, server) in variants.items():
            request = request_of(name, path)
            cpu = cpu_seconds(server_pid)
            run = await closed_loop(
                ports[server], request, concurrency=args.concurrency, count=10**9, seconds=args.seconds
            )
            if server == "one":
                run.server_cpu_us = (cpu_seconds(server_pid) - cpu) / run.requests * 1e6
            results[name].append(run)
    half = statistics.median(r.rate for r in results["token"]) / 2
    for name, path in ((HALF_PEAK_BARE, "/bare"), (HALF_PEAK, "/token")):
        request = http_request(path, body)
        paced = await open_loop(
            ports["one"], request, rate=half, connections=args.concurrency, seconds=args.paced_seconds
        )
        results[name] = [paced]
    return results


HALF_PEAK = "token at half the peak"
#: The control: bare at the same offered load, i.e. what the load generator, the HTTP server and the machine add.
HALF_PEAK_BARE = "bare at the same rate"


def _pooled(runs: list[Result]) -> Result:
    return Result(
        sum(r.requests for r in runs), sum(r.seconds for r in runs), [x for r in runs for x in r.latencies_ms]
    )


def report(results: dict[str, list[Result]], args: argparse.Namespace, token_bytes: int, command: str) -> str:
    bare = results["bare"]

    def ratio(name: str, base: list[Result]) -> float:
        return statistics.median(r.rate / b.rate for r, b in zip(results[name], base, strict=True))

    rows = [
        "| variant | median rate (req/s) | ratio to bare | p50 (ms) | p99 (ms) | server CPU per request (µs) "
        "| load generator CPU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        if name in (HALF_PEAK, HALF_PEAK_BARE):
            continue
        pooled = _pooled(runs)
        base = results[f"bare, {args.workers} workers"] if "workers" in name else bare
        rows.append(
            f"| {name} | {statistics.median(r.rate for r in runs):,.0f} | {ratio(name, base):.2f} "
            f"| {pooled.percentile(50):.2f} | {pooled.percentile(99):.2f} | {_server_cpu(runs)} "
            f"| {statistics.median(r.generator_cpu for r in runs):.0%} |"
        )
    paced, control = results[HALF_PEAK][0], results[HALF_PEAK_BARE][0]
    for label, run in (("token, open loop at half the peak", paced), ("bare, open loop at the same rate", control)):
        rows.append(
            f"| {label} ({run.requests / run.seconds:,.0f} req/s) | | "
            f"| {run.percentile(50):.2f} | {run.percentile(99):.2f} | | {run.generator_cpu:.0%} |"
        )
    issuance = ratio("token", bare)
    lag = paced.percentile(99, paced.lags_ms)
    token_cpu = statistics.median(r.server_cpu_us for r in results["token"])
    cpu_ratio = statistics.median(r.server_cpu_us for r in bare) / token_cpu if token_cpu else 0.0
    lines = [
        HEADING,
        "",
        "Txn-Tokens per second through the full HTTP endpoint against a bare Starlette POST endpoint reading the same",
        "body, on the same uvicorn server (one worker, h11). A `token` request is a gateway's exchange: requester",
        "authentication, an ES256 RFC 9068 access token as subject, policy checks, an ES256 Txn-Token of "
        f"{token_bytes} bytes",
        "signed, an audit line. In `token` the client assertion is the gateway's JWT-SVID (a platform credential,",
        "reused until it expires): with the TTS's verified-token cache, neither the assertion's nor the subject's",
        "signature is checked again. `token, cache off` is the same TTS built with",
        "`verified_token_cache = 0`, mounted on the same server. In `token, key-pair assertion` each request carries",
        "a new ES256 assertion signed with the gateway's registered key (a new `jti`, accepted once: never cached),",
        "signed before the run.",
        f"The load generator (asyncio, raw HTTP/1.1 keep-alive, {args.concurrency} connections, closed loop) runs on",
        f"loopback; the variants are interleaved in {args.rounds} rounds of {args.seconds:g} s; a ratio is the median",
        "over rounds of the variant's rate over bare's in the same round (a `workers` variant: over bare on the same",
        "multi-worker server).",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {_cpus()} CPU(s), Python {platform.python_version()}, {platform.system()}"
        " (the server and the load generator share the CPUs); load average "
        f"{os.getloadavg()[0]:.1f} at the end of the run, the benchmark's own processes included.",
        "",
        *rows,
        "",
        f"- Issuance rate relative to the bare endpoint: **{issuance:.2f}** (goal >= 0.5: "
        f"{'met' if issuance >= 0.5 else 'NOT met'}); with the cache off: {ratio('token, cache off', bare):.2f};",
        f"  with a fresh key-pair assertion per request: {ratio(KEY_PAIR, bare):.2f}.",
        f"- By the server's CPU time per request (which other processes' load hardly changes): **{cpu_ratio:.2f}** of",
        "  bare (bare's CPU time over token's), the rate ratio the server would reach on a CPU of its own.",
        f"- p99 at half the peak rate: **{paced.percentile(99):.2f} ms** (goal < 2 ms: "
        f"{'met' if paced.percentile(99) < 2 else 'NOT met'}); latency there counts from the moment the load",
        "  generator starts a request, waiting for a free connection included. The control, bare at the same offered",
        "  load, measures what the load generator, uvicorn and the shared machine add by themselves: p99 "
        f"{control.percentile(99):.2f} ms.",
        f"- The load generator started the half-peak requests within {lag:.2f} ms of their schedule at p99 (max",
        f"  {max(paced.lags_ms, default=0):.2f} ms), using {paced.generator_cpu:.0%} of one CPU; counted from the "
        f"schedule, that lag included, p99 is {paced.percentile(99, paced.from_schedule_ms):.2f} ms.",
    ]
    if args.workers > 1:
        scale = ratio(f"token, {args.workers} workers", results["token"])
        lines.append(f"- {args.workers} workers against one: **{scale:.2f}** times the issuance rate (same run).")
    return "\n".join([*lines, "", ""])


def _server_cpu(runs: list[Result]) -> str:
    cpu = statistics.median(r.server_cpu_us for r in runs)
    return f"{cpu:,.0f}" if cpu else ""


def _cpus() -> int:
    return os.cpu_count() or 1


def write_doc(section: str) -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Performance\n\n"
    start = text.find(HEADING + "\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(HEADING))
        text = text[:start] + section + ("" if end == -1 else text[end + 1 :])
    DOC.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="closed-loop seconds per variant per round")
    parser.add_argument("--warmup", type=int, default=300, help="requests per variant before the rounds")
    parser.add_argument("--paced-seconds", type=float, default=4.0, help="length of the half-peak run")
    parser.add_argument("--workers", type=int, default=1, help="also measure a server with this many workers")
    parser.add_argument(
        "--assertions", type=int, default=20_000, help="fresh key-pair requests signed beforehand (bounds that variant)"
    )
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/performance.md alone")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(Path(args.serve), args.port, args.workers)
        return 0
    command = "python benchmarks/issue.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    servers = {"one": 1, **({"many": args.workers} if args.workers > 1 else {})}
    with tempfile.TemporaryDirectory(prefix="txtoken-bench-") as tmp, ExitStack() as stack:
        setup = prepare(Path(tmp))
        ports: dict[str, int] = {}
        pids: dict[str, int] = {}
        for server, workers in servers.items():
            ports[server] = port = _free_port()
            command_line = [sys.executable, __file__, "--serve", str(setup.config), "--port", str(port)]
            process = subprocess.Popen([*command_line, "--workers", str(workers)], cwd=ROOT)  # noqa: S603 - this script
            pids[server] = process.pid
            stack.callback(process.wait, 10)
            stack.callback(process.terminate)
            _wait(f"http://127.0.0.1:{port}", process)
        token_bytes = _check_token(f"http://127.0.0.1:{ports['one']}", setup.body)
        # Fresh key-pair assertions are signed before the run: the load generator must not sign while it measures.
        key_pair = [http_request("/token", setup.key_pair_bodies()) for _ in range(args.assertions)]
        results = asyncio.run(measure(ports, pids["one"], setup.body, key_pair, args))
    section = report(results, args, token_bytes, command)
    print(section)
    if not args.no_doc:
        write_doc(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
