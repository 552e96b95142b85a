"""What txtoken adds to a call chain: N services in a line, each forwarding to the next, with and without txtoken.

Eight HTTP hop servers (uvicorn, one worker each, a subprocess each, on loopback) form a line H1 → H2 → … → H8, and a
gRPC server G (``grpc.aio``) stands behind H8. Every hop serves two paths, so that both variants run on the same
processes, interleaved:

- ``/plain``: the hop forwards the request to the next hop with an ``httpx.AsyncClient`` (keep-alive), no token;
- ``/txn``: the hop sits behind ``TxnTokenMiddleware`` with the verifier's cache **off** (every hop verifies the
  ES256 signature and the claims of the token, as if it had never seen it) and forwards with ``TxnTokenAuth``, which
  attaches the current transaction's token to the outbound request;
- ``/wimse``: as ``/txn``, and the middleware also verifies the caller's WIT (cached, as a caller presents the same
  WIT for hours) and a fresh WPT (signature, ``aud`` = the hop's URL + path, ``tth``, ``jti`` in an in-memory replay
  store) before the Txn-Token; the hop forwards with ``TxnTokenAuth(identity=...)`` (its WIT and key from files, as an
  agent delivers them), which signs a fresh WPT for every request. The load generator is the first caller: it signs
  a fresh WPT for each request it sends (a WIMSE hop's own cost), with a WIT of its own.

A chain of N hops is entered at H(9-N); the last hop answers. In the gRPC variant (``/gplain``, ``/gtxn``) the last
of the N hops is G instead: H8 calls G's unary method over a ``grpc.aio`` channel (``aio_client_interceptors`` attach
the token; ``AioTxnTokenServerInterceptor`` verifies it, cache off).

Measured in one run, all configurations interleaved in each round:

1. latency at a fixed offered load (open loop: latency counts from each request's scheduled start, so queueing is
   included); the added latency per hop is ``(p(txn) - p(plain)) / N`` at p50 and p99 over all rounds' samples;
2. the maximum throughput of each chain (closed loop, ``--connections`` keep-alive connections): median over rounds
   of the txtoken chain's rate over the plain chain's rate in the same round.

Goal (issue 15): a 4-hop chain adds at most 1 ms at p50 and 2 ms at p99 over the same chain without txtoken; the
benchmark says whether the txn chain and the WIMSE chain meet it.

    .venv/bin/python benchmarks/chain.py [--rounds 3] [--rate 10] [--seconds 3] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.issue import Connection, Result, closed_loop, open_loop  # noqa: E402 - after the path set-up

TRUST_DOMAIN = "bench.example"
HOPS = 8
LENGTHS = (1, 2, 4, 8)
GRPC_METHOD = "/bench.Chain/Call"
#: variant -> (path, token sent, last hop is gRPC)
VARIANTS = {
    "plain": ("/plain", False, False),
    "txn": ("/txn", True, False),
    "wimse": ("/wimse", True, False),
    "gplain": ("/gplain", False, True),
    "gtxn": ("/gtxn", True, True),
}
Chain = tuple[int, str]  # (hops, variant)
#: The load generator's own workload identity (the first caller of a WIMSE chain).
CLIENT = "client"


# -- the hops (subprocesses) ----------------------------------------------------------------------------------------


def hop_app(jwks: str, wimse: Path, port: int, next_http: str | None, next_grpc: tuple[int, int] | None) -> Any:
    """One hop: ``/plain``, ``/txn`` and ``/wimse`` (and ``/gplain``, ``/gtxn``) forward to the next hop, or answer
    if last. ``wimse`` holds the WIT anchors (``wit-jwks.json``) and each hop's WIT and key (``<port>/``)."""
    import grpc
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    from txtoken import TxnTokenVerifier, load_jwks
    from txtoken.credentials import WitFileSource
    from txtoken.replay import MemoryReplayStore
    from txtoken.wimse import CallerVerifier, WitVerifier, WptVerifier
    from txtoken_asgi import TxnTokenMiddleware
    from txtoken_grpc import aio_client_interceptors
    from txtoken_httpx import TxnTokenAuth

    verifier = TxnTokenVerifier(load_jwks(jwks), trust_domain=TRUST_DOMAIN, cache_size=0)
    wit_anchors = load_jwks((wimse / "wit-jwks.json").read_text())
    callers = CallerVerifier(
        WitVerifier(wit_anchors, trust_domain=TRUST_DOMAIN),
        WptVerifier(replay_store=MemoryReplayStore(1_000_000)),  # every WPT of a run fits: none is refused as full
    )
    identity = WitFileSource(str(wimse / str(port) / "wit.jwt"), str(wimse / str(port) / "key.json"))
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    timeout = httpx.Timeout(60.0)  # saturated chains queue; a timeout would end the run, not measure it
    plain_client = httpx.AsyncClient(limits=limits, timeout=timeout)
    txn_client = httpx.AsyncClient(limits=limits, timeout=timeout, auth=TxnTokenAuth(trusted_hosts=["127.0.0.1"]))
    wimse_auth = TxnTokenAuth(trusted_hosts=["127.0.0.1"], identity=identity)
    wimse_client = httpx.AsyncClient(limits=limits, timeout=timeout, auth=wimse_auth)
    channels: dict[str, Any] = {}

    def grpc_call(variant: str) -> Any:
        if variant not in channels:  # created on the server's event loop, at the first call
            assert next_grpc is not None
            plain_port, txn_port = next_grpc
            if variant == "gtxn":
                channel = grpc.aio.insecure_channel(f"127.0.0.1:{txn_port}", interceptors=aio_client_interceptors())
            else:
                channel = grpc.aio.insecure_channel(f"127.0.0.1:{plain_port}")
            channels[variant] = channel.unary_unary(GRPC_METHOD)
        return channels[variant]

    def forwarder(path: str, client: httpx.AsyncClient) -> Any:
        variant = path.strip("/")
        grpc_last = variant.startswith("g") and next_http is None

        async def forward(request: Request) -> Response:
            if grpc_last:
                await grpc_call(variant)(b"call", timeout=10)
            elif next_http is not None:
                answer = await client.get(f"{next_http}{path}")
                if answer.status_code != 200:
                    print(f"next hop answered {answer.status_code}: {answer.text[:80]}", file=sys.stderr)
                    return PlainTextResponse("next hop failed", status_code=502)
            return PlainTextResponse("ok")

        return forward

    inner = Starlette(
        routes=[
            Route("/plain", forwarder("/plain", plain_client)),
            Route("/gplain", forwarder("/gplain", plain_client)),
            Route("/txn", forwarder("/txn", txn_client)),
            Route("/gtxn", forwarder("/gtxn", txn_client)),
            Route("/wimse", forwarder("/wimse", wimse_client)),
        ]
    )
    guarded = TxnTokenMiddleware(inner, verifier=verifier)
    service_urls = [f"http://127.0.0.1:{port}"]
    wimse_guarded = TxnTokenMiddleware(inner, verifier=verifier, callers=callers, service_urls=service_urls)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        # The plain paths bypass the middleware entirely (not through its exemptions): the baseline has no txtoken.
        if scope["type"] == "http" and scope["path"] in ("/txn", "/gtxn"):
            await guarded(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == "/wimse":
            await wimse_guarded(scope, receive, send)
        else:
            await inner(scope, receive, send)

    return app


async def serve_grpc(jwks: str, plain_port: int, txn_port: int) -> None:
    """G: the same unary method on two servers, the second behind the interceptor (cache off)."""
    import grpc

    from txtoken import TxnTokenVerifier, load_jwks
    from txtoken_grpc import AioTxnTokenServerInterceptor

    async def call(request: bytes, context: Any) -> bytes:
        return b"ok"

    handlers = [
        grpc.method_handlers_generic_handler("bench.Chain", {"Call": grpc.unary_unary_rpc_method_handler(call)})
    ]
    verifier = TxnTokenVerifier(load_jwks(jwks), trust_domain=TRUST_DOMAIN, cache_size=0)
    servers = []
    for port, interceptors in ((plain_port, []), (txn_port, [AioTxnTokenServerInterceptor(verifier)])):
        server = grpc.aio.server(interceptors=interceptors)
        server.add_generic_rpc_handlers(handlers)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        servers.append(server)
    await asyncio.gather(*(s.wait_for_termination() for s in servers))


def serve(argv: list[str]) -> None:
    kind, jwks_file, port, *rest = argv
    jwks = Path(jwks_file).read_text()
    gc.freeze()  # as `txtoken serve` does: the startup heap stays out of the collector's full passes
    if kind == "grpc":
        asyncio.run(serve_grpc(jwks, int(port), int(rest[0])))
        return
    import uvicorn

    wimse, next_http = Path(rest[0]), rest[1] if rest[1] != "-" else None
    next_grpc = (int(rest[2]), int(rest[3])) if len(rest) == 4 else None
    app = hop_app(jwks, wimse, int(port), next_http, next_grpc)
    # Idle connections outlive the clients' keep-alive expiry (httpx: 5 s), so no request races a server-side close.
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(port),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=75,
    )


# -- orchestration --------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def start(args: list[str], port: int, stack: ExitStack) -> None:
    process = subprocess.Popen([sys.executable, __file__, "--serve", *args])  # noqa: S603 - this script
    stack.callback(process.wait, 10)
    stack.callback(process.terminate)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"hop {args} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"hop {args} did not start")


def issue_identity(wit_keys: Any, wimse: Path, name: str) -> None:
    """A WIT for ``spiffe://bench.example/<name>`` and its key, as files in ``wimse/<name>/``."""
    from txtoken import KeySet
    from txtoken.wimse import WitIssuer

    wit, key = WitIssuer(wit_keys, trust_domain=TRUST_DOMAIN).issue_with_new_key(f"spiffe://{TRUST_DOMAIN}/{name}")
    (wimse / name).mkdir()
    (wimse / name / "wit.jwt").write_text(wit)
    KeySet(key).save(wimse / name / "key.json")


def start_chain(jwks_file: str, wit_keys: Any, wimse: Path, stack: ExitStack) -> list[int]:
    """Start G, then H8 … H1, each with a WIT of its own; return the HTTP ports, H1 first."""
    grpc_plain, grpc_txn = free_port(), free_port()
    start(["grpc", jwks_file, str(grpc_plain), str(grpc_txn)], grpc_txn, stack)
    ports: list[int] = []
    for index in range(HOPS, 0, -1):
        port = free_port()
        last = index == HOPS
        rest = ["-", str(grpc_plain), str(grpc_txn)] if last else [f"http://127.0.0.1:{ports[0]}"]
        issue_identity(wit_keys, wimse, str(port))
        start(["http", jwks_file, str(port), str(wimse), *rest], port, stack)
        ports.insert(0, port)
    return ports


def configurations(ports: list[int]) -> list[tuple[int, str, int]]:
    """(hops, variant, entry port) for every chain measured; a gRPC chain of N hops has N-1 HTTP hops, then G."""
    chains = []
    for hops in LENGTHS:
        for variant, (_, _, grpc_last) in VARIANTS.items():
            http_hops = hops - 1 if grpc_last else hops
            if http_hops >= 1:
                chains.append((hops, variant, ports[HOPS - http_hops]))
    return chains


def request_bytes(variant: str, token: str, proof: str = "") -> bytes:
    path, with_token, _ = VARIANTS[variant]
    header = f"Txn-Token: {token}\r\n" if with_token else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}{proof}\r\n".encode("ascii")


def requests_of(variant: str, token: str, port: int, client: Any) -> Iterator[bytes]:
    """The requests a chain entered at ``port`` is sent: the same one again, or (WIMSE) each with a fresh WPT signed
    by the load generator's workload ``client`` as it is sent."""
    if variant != "wimse":
        while True:
            yield request_bytes(variant, token)
    from txtoken.wimse import WIT_HEADER, WPT_HEADER, create_wpt

    audience = f"http://127.0.0.1:{port}{VARIANTS[variant][0]}"
    while True:
        wpt = create_wpt(client.key, wit=client.value, audience=audience, txn_token=token)
        yield request_bytes(variant, token, f"{WIT_HEADER}: {client.value}\r\n{WPT_HEADER}: {wpt}\r\n")


async def check(port: int, request: bytes) -> None:
    connection = await Connection.open(port)
    try:
        status, body = await connection.roundtrip(request)
    finally:
        connection.close()
    if status != 200 or body != b"ok":
        raise RuntimeError(f"chain answered {status} {body[:60]!r}")


def measure(
    ports: list[int], mint: Callable[[], str], client: Any, args: argparse.Namespace
) -> tuple[dict[Chain, Result], dict[Chain, list[float]]]:
    """All rounds: paced latency samples pooled per chain, peak rates per round per chain."""
    chains = configurations(ports)
    latency: dict[Chain, Result] = {(h, v): Result(0, 0.0, []) for h, v, _ in chains}
    peak: dict[Chain, list[float]] = {(h, v): [] for h, v, _ in chains}

    async def run_round(warmup: bool) -> None:
        token = mint()  # a fresh token per round: a Txn-Token lives at most 5 minutes
        for hops, variant, port in chains:
            requests = requests_of(variant, token, port, client)
            seconds = 0.3 if warmup else args.seconds
            timed = await open_loop(port, requests, rate=args.rate, connections=args.connections, seconds=seconds)
            closed = await closed_loop(port, requests, concurrency=args.connections, count=10**9, seconds=seconds / 2)
            if not warmup:
                # Counted from each request's schedule: queueing and the load generator's own WPT included.
                latency[hops, variant].latencies_ms.extend(timed.from_schedule_ms)
                latency[hops, variant].requests += timed.requests
                peak[hops, variant].append(closed.rate)

    async def run() -> None:
        token = mint()
        for _, variant, port in chains:
            await check(port, next(requests_of(variant, token, port, client)))
        await run_round(warmup=True)
        for _ in range(args.rounds):
            await run_round(warmup=False)

    gc.collect()
    gc.freeze()
    gc.disable()  # the load generator is not what is measured
    try:
        asyncio.run(run())
    finally:
        gc.enable()
    return latency, peak


def added(measured: Result, base: Result) -> tuple[float, float]:
    """What ``measured`` adds over ``base``: the differences of their p50 and of their p99, in ms."""
    return measured.percentile(50) - base.percentile(50), measured.percentile(99) - base.percentile(99)


def report(latency: dict[Chain, Result], peak: dict[Chain, list[float]], args: argparse.Namespace) -> bool:
    """Print every chain, the added latency (in all and per hop) over plain, and for WIMSE over txn; then the goal."""
    print(
        f"offered load {args.rate:g} req/s (open loop, {args.seconds:g} s per chain per round, {args.rounds} rounds); "
        f"peak: closed loop, {args.connections} connections; load average {os.getloadavg()[0]:.1f}\n"
    )
    print("chain      variant    hops   p50 ms  p99 ms |  added p50    p99 | per hop p50    p99 | peak req/s  ratio")
    four: dict[str, tuple[float, float]] = {}
    for label, base, variants in (("HTTP", "plain", ("txn", "wimse")), ("HTTP+gRPC", "gplain", ("gtxn",))):
        for hops in LENGTHS:
            if (hops, base) not in latency:
                continue
            plain = latency[hops, base]
            print(
                f"{label:<10} {base:<8} {hops:>5} {plain.percentile(50):>8.2f} {plain.percentile(99):>7.2f} |"
                f"{'':>18} |{'':>19} | {statistics.median(peak[hops, base]):>10,.0f}"
            )
            for variant in variants:
                measured = latency[hops, variant]
                add50, add99 = added(measured, plain)
                ratio = statistics.median(t / p for t, p in zip(peak[hops, variant], peak[hops, base], strict=True))
                p50, p99 = measured.percentile(50), measured.percentile(99)
                print(
                    f"{label:<10} {variant:<8} {hops:>5} {p50:>8.2f} {p99:>7.2f}"
                    f" | {add50:>+10.2f} {add99:>+6.2f} | {add50 / hops:>+11.2f} {add99 / hops:>+6.2f}"
                    f" | {statistics.median(peak[hops, variant]):>10,.0f} {ratio:>6.2f}"
                )
                if variant == "wimse":  # what the WIMSE binding adds over the Txn-Token alone
                    over50, over99 = added(measured, latency[hops, "txn"])
                    print(
                        f"{label:<10} {'  vs txn':<8} {hops:>5} {'':>16} | {over50:>+10.2f} {over99:>+6.2f} |"
                        f" {over50 / hops:>+11.2f} {over99 / hops:>+6.2f} |"
                    )
                if label == "HTTP" and hops == 4:
                    four[variant] = (add50, add99)
    print()
    met = []
    for variant, (add50, add99) in four.items():
        met.append(add50 <= 1.0 and add99 <= 2.0)
        print(
            f"goal ({variant}): 4-hop HTTP chain adds <= 1 ms at p50 and <= 2 ms at p99 over plain, each hop "
            f"verifying an uncached token: {'met' if met[-1] else 'NOT met'} ({add50:+.2f} ms p50, {add99:+.2f} ms p99)"
        )
    print("(Istio's published figure, for comparison: its sidecars add 2.65 ms at p90 per call)")
    return all(met)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=10.0, help="offered load of the latency runs (req/s)")
    parser.add_argument("--seconds", type=float, default=3.0, help="paced seconds per chain per round")
    parser.add_argument("--connections", type=int, default=8, help="client connections (paced pool and closed loop)")
    parser.add_argument("--serve", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0

    from txtoken import KeySet, TxnTokenMinter
    from txtoken.credentials import WitFileSource

    keys = KeySet.generate()
    wit_keys = KeySet.generate("ES256")  # the trust domain's WIT key
    minter = TxnTokenMinter(keys, trust_domain=TRUST_DOMAIN)

    def mint() -> str:
        return minter.mint(
            sub="d084sdrt234fsaw34tr23t",
            scope="trade.stocks",
            req_wl="spiffe://bench.example/gateway",
            rctx={"req_ip": "69.151.72.123", "authn": "face"},
            tctx={"action": "BUY", "ticker": "MSFT", "quantity": "100"},
        )

    with tempfile.TemporaryDirectory(prefix="txtoken-chain-") as tmp, ExitStack() as stack:
        jwks_file = str(Path(tmp) / "jwks.json")
        Path(jwks_file).write_text(json.dumps(keys.public_jwks()))
        wimse = Path(tmp) / "wimse"
        wimse.mkdir()
        (wimse / "wit-jwks.json").write_text(json.dumps(wit_keys.public_jwks()))
        issue_identity(wit_keys, wimse, CLIENT)
        client = WitFileSource(str(wimse / CLIENT / "wit.jwt"), str(wimse / CLIENT / "key.json")).get()
        ports = start_chain(jwks_file, wit_keys, wimse, stack)
        print(f"ES256 token of {len(mint())} bytes; {HOPS} HTTP hops + 1 gRPC hop started, each with a WIT")
        latency, peak = measure(ports, mint, client, args)
    report(latency, peak, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
