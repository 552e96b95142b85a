"""Per-hop cost of the integrations: requests per second of a trivial endpoint, with and without txtoken, in one run.

HTTP (uvicorn, one worker, each variant its own subprocess on loopback):

- ``bare``: a Starlette endpoint answering ``ok``;
- ``noop-middleware``: the same behind a pure ASGI middleware that only wraps ``send`` and sets a ``ContextVar``
  around the app, as any middleware exposing a request context does: the floor of any such middleware here;
- ``signature-only``: the endpoint splits the token and checks its signature, nothing else (no payload, no claims):
  the floor any verifier pays, so the ceiling of any cache-off ratio on this machine;
- ``pyjwt``: the same endpoint checking the ``Txn-Token`` header by hand with ``jwt.decode`` (key object, audience,
  required claims) and the ``typ`` header;
- ``verifier-in-handler``: the same endpoint calling ``TxnTokenVerifier.verify`` by hand, cache off (what
  verification alone costs in place, without the middleware);
- ``middleware-nocache``: the bare endpoint behind ``TxnTokenMiddleware``, verifier cache off (every request verifies);
- ``middleware-cache``: the same with the cache on (the token has been seen before);
- ``wimse-ceiling``: the endpoint checks two signatures and nothing else: the WPT's, with the key of the caller's
  WIT (its WIT parsed once), and the Txn-Token's; the ceiling of WIMSE verification on this machine;
- ``wimse-middleware``: the bare endpoint behind ``TxnTokenMiddleware`` with ``callers``: WIT (cached), a fresh WPT
  (every check of the draft, ``jti`` in the in-memory replay store), then the Txn-Token (cache off).

Both WIMSE variants get a fresh WPT per request (made by the load generator before each run, bound to the
Txn-Token by ``tth``); their ratio is ``wimse-middleware`` / ``wimse-ceiling`` in the same round.

gRPC (``grpc.aio`` server, one subprocess per variant): a unary call with raw-bytes messages, ``bare``; the handler
checking the token's signature and nothing else (``signature-only``, the gRPC ceiling of a cache-off ratio); behind
an interceptor that does nothing (what any ``grpc.aio`` interceptor costs); and behind ``AioTxnTokenServerInterceptor``
with the cache off and on.

The load generator runs in this process: for HTTP, keep-alive HTTP/1.1 connections on asyncio streams; for gRPC, a
``grpc.aio`` channel with concurrent calls. Every request carries the same valid token. Machines here are shared and
noisy, so the variants are measured interleaved in rounds, and each ratio is the median over rounds of
(rate / bare rate in the same round). Bounded: ``rounds x variants x seconds`` of load, then the servers are stopped.
It prints whether each goal is met (issue 15: a hop at 0.95 of its ceiling; issue 11: WIMSE at 0.85 of its own).

    .venv/bin/python benchmarks/middleware.py [--rounds 5] [--seconds 1.0] [--connections 32]
        [--variants bare,wimse-ceiling,wimse-middleware] [--no-grpc] [--before DIR]

``--before DIR`` (a source tree, e.g. ``git worktree add --detach /tmp/before <commit>``) also serves the txtoken
variants with that tree's code, as ``<variant>@before``, in the same rounds: what a change bought, in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent

TRUST_DOMAIN = "bench.example"
HTTP_VARIANTS = (
    "bare",
    "noop-middleware",
    "signature-only",
    "pyjwt",
    "verifier-in-handler",
    "middleware-nocache",
    "middleware-cache",
    "wimse-ceiling",
    "wimse-middleware",
)
WIMSE_VARIANTS = ("wimse-ceiling", "wimse-middleware")
#: The variants whose server runs txtoken's middleware or interceptor (``--before`` serves them from another tree too).
TXTOKEN_VARIANTS = frozenset(
    {"middleware-nocache", "middleware-cache", "wimse-middleware", "interceptor-nocache", "interceptor-cache"}
)
BEFORE = "@before"
WPT_LIFETIME = 10  # seconds: each run's proofs are made just before it, and the replay store stays small
GRPC_VARIANTS = ("bare", "signature-only", "noop-interceptor", "interceptor-nocache", "interceptor-cache")
GRPC_METHOD = "/bench.Echo/Unary"
REQUIRED = ["iat", "exp", "aud", "txn", "sub", "scope", "req_wl"]
REQUEST: contextvars.ContextVar[Any] = contextvars.ContextVar("bench_request", default=None)


# -- servers (run in subprocesses) ----------------------------------------------------------------------------------


def http_app(variant: str, jwks: str, wit_jwks: str, port: int) -> Any:
    import jwt
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from txtoken import TxnTokenVerifier, load_jwks
    from txtoken.jws import b64url_decode, parse_jws
    from txtoken.keys import ALGORITHMS
    from txtoken.wimse import CallerVerifier, VerifiedWit, WitVerifier, WptVerifier
    from txtoken_asgi import TxnTokenMiddleware

    keys = load_jwks(jwks)
    pyjwt_alg = "EdDSA" if keys[0].alg in ("Ed25519", "EdDSA") else keys[0].alg

    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def checked_by_hand(request: Request) -> PlainTextResponse:
        token = request.headers.get("txn-token", "")
        try:
            if jwt.get_unverified_header(token).get("typ") != "txntoken+jwt":
                return PlainTextResponse("bad typ", status_code=401)
            jwt.decode(
                token,
                keys[0].public_key,
                algorithms=[pyjwt_alg],
                audience=TRUST_DOMAIN,
                options={"require": REQUIRED},
            )
        except jwt.PyJWTError:
            return PlainTextResponse("invalid", status_code=401)
        return PlainTextResponse("ok")

    async def signature_checked(request: Request) -> PlainTextResponse:
        jws = parse_jws(request.headers.get("txn-token", ""), algorithms=frozenset(ALGORITHMS))
        if not keys[0].verify(jws.signing_input, b64url_decode(jws.signature)):
            return PlainTextResponse("invalid", status_code=401)
        return PlainTextResponse("ok")

    ALL = frozenset(ALGORITHMS)
    wits = WitVerifier(load_jwks(wit_jwks), trust_domain=TRUST_DOMAIN)
    seen_wits: dict[str, VerifiedWit] = {}

    async def two_signatures(request: Request) -> PlainTextResponse:
        wit_token = request.headers.get("workload-identity-token", "")
        wit = seen_wits.get(wit_token) or seen_wits.setdefault(wit_token, wits.verify(wit_token))
        wpt = parse_jws(request.headers.get("workload-proof-token", ""), algorithms=ALL, require_kid=False)
        txn = parse_jws(request.headers.get("txn-token", ""), algorithms=ALL)
        if not wit.key.verify(wpt.signing_input, b64url_decode(wpt.signature)):
            return PlainTextResponse("invalid", status_code=401)
        if not keys[0].verify(txn.signing_input, b64url_decode(txn.signature)):
            return PlainTextResponse("invalid", status_code=401)
        return PlainTextResponse("ok")

    async def checked_by_verifier(request: Request) -> PlainTextResponse:
        verifier.verify(request.headers.get("txn-token", ""))
        return PlainTextResponse("ok")

    cache_size = 10_000 if variant == "middleware-cache" else 0
    verifier = TxnTokenVerifier(keys, trust_domain=TRUST_DOMAIN, cache_size=cache_size)
    if variant == "signature-only":
        return Starlette(routes=[Route("/", signature_checked)])
    if variant == "pyjwt":
        return Starlette(routes=[Route("/", checked_by_hand)])
    if variant == "verifier-in-handler":
        return Starlette(routes=[Route("/", checked_by_verifier)])
    if variant == "wimse-ceiling":
        return Starlette(routes=[Route("/", two_signatures)])
    middleware = []
    if variant == "noop-middleware":
        middleware = [Middleware(ContextMiddleware)]
    if variant.startswith("middleware"):
        middleware = [Middleware(TxnTokenMiddleware, verifier=verifier)]
    if variant == "wimse-middleware":
        callers = CallerVerifier(wits, WptVerifier())
        service_urls = [f"http://127.0.0.1:{port}"]
        middleware = [Middleware(TxnTokenMiddleware, verifier=verifier, callers=callers, service_urls=service_urls)]
    return Starlette(routes=[Route("/", ok)], middleware=middleware)


class ContextMiddleware:
    """A pure ASGI middleware doing the least a context-exposing one does: a ContextVar around the app, ``send``
    wrapped to run outside it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_outside(message: Any) -> None:
            reset = REQUEST.set(None)
            try:
                await send(message)
            finally:
                REQUEST.reset(reset)

        reset = REQUEST.set(scope)
        try:
            await self.app(scope, receive, send_outside)
        finally:
            REQUEST.reset(reset)


async def serve_grpc(variant: str, jwks: str, port: int) -> None:
    import grpc

    from txtoken import TxnTokenVerifier, load_jwks
    from txtoken.jws import b64url_decode, parse_jws
    from txtoken.keys import ALGORITHMS
    from txtoken_grpc import AioTxnTokenServerInterceptor

    keys = load_jwks(jwks)

    async def unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    async def signature_checked(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        token = next((v for k, v in context.invocation_metadata() or () if k == "txn-token"), "")
        jws = parse_jws(str(token), algorithms=frozenset(ALGORITHMS))
        if not keys[0].verify(jws.signing_input, b64url_decode(jws.signature)):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid")
        return request

    class Noop(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
            return await continuation(details)

    interceptors: list[grpc.aio.ServerInterceptor] = [Noop()] if variant == "noop-interceptor" else []
    if variant.startswith("interceptor"):
        cache_size = 0 if variant.endswith("nocache") else 10_000
        verifier = TxnTokenVerifier(load_jwks(jwks), trust_domain=TRUST_DOMAIN, cache_size=cache_size)
        interceptors.append(AioTxnTokenServerInterceptor(verifier))
    handler = signature_checked if variant == "signature-only" else unary
    server = grpc.aio.server(interceptors=interceptors)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("bench.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(handler)})]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def serve(kind: str, variant: str, jwks_file: str, port: int) -> None:
    variant = variant.removesuffix(BEFORE)
    jwks = Path(jwks_file).read_text()
    if kind == "grpc":
        asyncio.run(serve_grpc(variant, jwks, port))
        return
    import uvicorn

    app = http_app(variant, jwks, Path(jwks_file).with_suffix(".wit.json").read_text(), port)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- load generators (this process) ---------------------------------------------------------------------------------


class Requests:
    """The requests a load sends: the same one every time, or (WIMSE) each with a fresh WPT made before the run."""

    def __init__(self, token: str, wimse: tuple[str, Any] | None = None) -> None:
        self.token = token
        self.wimse = wimse  # (WIT, the workload's signing key)
        self._fixed = f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nTxn-Token: {token}\r\n\r\n".encode("ascii")
        self._fresh: list[bytes] = []

    def prepare(self, port: int, count: int) -> None:
        if self.wimse is not None:
            self._fresh = [self._with_proof(port) for _ in range(count)]
            self._port = port

    def _with_proof(self, port: int) -> bytes:
        from txtoken.wimse import create_wpt

        assert self.wimse is not None
        wit, key = self.wimse
        wpt = create_wpt(
            key, wit=wit, audience=f"http://127.0.0.1:{port}/", txn_token=self.token, lifetime=WPT_LIFETIME
        )
        head = f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nTxn-Token: {self.token}\r\n"
        return f"{head}Workload-Identity-Token: {wit}\r\nWorkload-Proof-Token: {wpt}\r\n\r\n".encode("ascii")

    def next(self) -> bytes:
        if self.wimse is None:
            return self._fixed
        return self._fresh.pop() if self._fresh else self._with_proof(self._port)


async def http_load(port: int, requests: Requests, seconds: float, connections: int) -> tuple[int, float]:
    """Requests answered over ``connections`` keep-alive connections (each answer checked for 200), and the
    seconds it took."""
    deadline = time.perf_counter() + seconds
    counts = [0] * connections

    async def connection(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                writer.write(requests.next())
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"unexpected answer: {head[:40]!r}")
                length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                await reader.readexactly(length)
                counts[i] += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection(i) for i in range(connections)))
    return sum(counts), time.perf_counter() - start


async def grpc_load(port: int, requests: Requests, seconds: float, concurrency: int) -> tuple[int, float]:
    import grpc

    token = requests.token
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(GRPC_METHOD)
        metadata = (("txn-token", token),)
        deadline = time.perf_counter() + seconds
        counts = [0] * concurrency

        async def caller(i: int) -> None:
            while time.perf_counter() < deadline:
                await unary(b"ping", metadata=metadata, timeout=10)
                counts[i] += 1

        start = time.perf_counter()
        await asyncio.gather(*(caller(i) for i in range(concurrency)))
        return sum(counts), time.perf_counter() - start


# -- orchestration --------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Server(NamedTuple):
    port: int
    pid: int


def start_server(kind: str, variant: str, jwks_file: str, stack: ExitStack, before: str | None = None) -> Server:
    """A server for ``variant``; one whose name ends in ``@before`` runs the txtoken of the source tree ``before``."""
    port = free_port()
    args = [sys.executable, __file__, "--serve", kind, variant, jwks_file, str(port)]
    env = None
    if variant.endswith(BEFORE) and before is not None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([before, str(Path(before) / "integrations")])}
    process = subprocess.Popen(args, env=env)  # noqa: S603 - our own script, fixed arguments
    stack.callback(process.wait, 10)
    stack.callback(process.terminate)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} server {variant} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return Server(port, process.pid)
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{kind} server {variant} did not start")


Load = Callable[[int, Requests, float, int], Coroutine[Any, Any, tuple[int, float]]]
#: Proofs made ahead of each WIMSE run: more than such a run can send here (the rest are made on the fly).
PROOFS_PER_SECOND = 5000


class Measured(NamedTuple):
    """Per variant and round: requests per second, and requests per second of the server's own CPU time."""

    rates: dict[str, list[float]]
    cpu_rates: dict[str, list[float]]


def measure(
    load: Load,
    servers: dict[str, Server],
    requests: dict[str, Requests],
    rounds: int,
    seconds: float,
    concurrency: int,
) -> Measured:
    """Each variant in each round, the variants interleaved in each round. The server's CPU time per request is
    read from ``/proc``: other processes' load changes it far less than it changes the rate."""
    if str(ROOT) not in sys.path:  # not at import: a server's txtoken may come from another tree (--before)
        sys.path.append(str(ROOT))
    from benchmarks.issue import cpu_seconds

    measured = Measured({variant: [] for variant in servers}, {variant: [] for variant in servers})

    def run(variant: str, duration: float) -> tuple[float, float]:
        port, pid = servers[variant]
        requests[variant].prepare(port, int(duration * PROOFS_PER_SECOND))
        cpu = cpu_seconds(pid)
        count, elapsed = asyncio.run(load(port, requests[variant], duration, concurrency))
        used = cpu_seconds(pid) - cpu
        return count / elapsed, count / used if used > 0 else 0.0

    for variant in servers:  # warm up: imports, caches, connection setup
        run(variant, min(seconds, 0.5))
    for _ in range(rounds):
        for variant in servers:
            rate, cpu_rate = run(variant, seconds)
            measured.rates[variant].append(rate)
            measured.cpu_rates[variant].append(cpu_rate)
    return measured


def ratio(rates: dict[str, list[float]], variant: str, baseline: str) -> float:
    """The median over rounds of ``variant``'s rate over ``baseline``'s in the same round."""
    return statistics.median(v / b for v, b in zip(rates[variant], rates[baseline], strict=True))


def report(title: str, measured: Measured) -> None:
    rates, cpu = measured
    print(f"{title}\nvariant                 req/s   ratio to bare   server CPU µs/req   ratio by CPU")
    for variant, values in rates.items():
        cpu_us = 1e6 / statistics.median(cpu[variant]) if all(cpu[variant]) else 0.0
        print(
            f"{variant:<20} {statistics.median(values):>8,.0f}   {ratio(rates, variant, 'bare'):>13.2f}"
            f"   {cpu_us:>17,.1f}   {ratio(cpu, variant, 'bare') if cpu_us else 0.0:>12.2f}"
        )
    print()


#: (what, variant, baseline, goal): each goal is a median of per-round ratios (issue 15 goal 3; issue 11 point 8).
GOALS = (
    ("HTTP middleware, cache off, of signature-only", "middleware-nocache", "signature-only", 0.95),
    ("HTTP middleware, cache on, of bare", "middleware-cache", "bare", 0.95),
    ("WIMSE middleware, of its ceiling (wimse-ceiling)", "wimse-middleware", "wimse-ceiling", 0.85),
    ("gRPC interceptor, cache off, of signature-only", "interceptor-nocache", "signature-only", 0.95),
    ("gRPC interceptor, cache on, of bare", "interceptor-cache", "bare", 0.95),
)


def report_goals(measured: Measured, kind: str) -> None:
    """Each goal of ``kind`` by rate (the goal's measure) and by the servers' CPU time per request; with ``--before``,
    also for the variants served from that tree."""
    for what, variant, baseline, goal in [
        *GOALS,
        *((f"{what} ({BEFORE[1:]})", f"{variant}{BEFORE}", baseline, goal) for what, variant, baseline, goal in GOALS),
    ]:
        if not what.startswith(kind) or variant not in measured.rates or baseline not in measured.rates:
            continue
        for measure_name, values in (("rate", measured.rates), ("server CPU", measured.cpu_rates)):
            if not all(values[variant]) or not all(values[baseline]):
                continue
            value = ratio(values, variant, baseline)
            rounds = ", ".join(f"{v / b:.2f}" for v, b in zip(values[variant], values[baseline], strict=True))
            verdict = "met" if value >= goal else "NOT met"
            print(f"goal {what} >= {goal}, by {measure_name}: {value:.2f} ({verdict}; rounds {rounds})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="of load per variant per round")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (HTTP) or calls (gRPC)")
    parser.add_argument("--alg", default="ES256", choices=["ES256", "EdDSA", "RS256"], help="the token's algorithm")
    parser.add_argument("--variants", help="comma-separated variants to measure (bare always); default: all")
    parser.add_argument("--no-grpc", action="store_true", help="measure the HTTP variants only")
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="a source tree of txtoken (e.g. a git worktree of an earlier commit): its middleware and interceptor "
        "variants run too, as <variant>@before, in the same rounds",
    )
    parser.add_argument("--serve", nargs=4, metavar=("KIND", "VARIANT", "JWKS", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, variant, jwks_file, port = args.serve
        serve(kind, variant, jwks_file, int(port))
        return

    from txtoken import KeySet, TxnTokenMinter
    from txtoken.wimse import WitIssuer

    keys = KeySet.generate(args.alg)
    wit_keys = KeySet.generate("ES256")
    wit, workload_key = WitIssuer(wit_keys, trust_domain=TRUST_DOMAIN).issue_with_new_key(
        "spiffe://bench.example/caller", args.alg
    )
    minter = TxnTokenMinter(keys, trust_domain=TRUST_DOMAIN)
    token = minter.mint(
        sub="d084sdrt234fsaw34tr23t",
        scope="trade.stocks",
        req_wl="spiffe://bench.example/gateway",
        rctx={"req_ip": "69.151.72.123", "authn": "face"},
        tctx={"action": "BUY", "ticker": "MSFT", "quantity": "100", "customer_type": {"geo": "US", "level": "VIP"}},
    )
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        jwks_file = str(Path(tmp) / "jwks.json")
        Path(jwks_file).write_text(json.dumps(keys.public_jwks()))
        Path(jwks_file).with_suffix(".wit.json").write_text(json.dumps(wit_keys.public_jwks()))
        chosen = set(args.variants.split(",")) | {"bare"} if args.variants else {*HTTP_VARIANTS, *GRPC_VARIANTS}
        http_variants = [v for v in HTTP_VARIANTS if v in chosen]
        grpc_variants = [] if args.no_grpc else [v for v in GRPC_VARIANTS if v in chosen]
        if args.before:
            http_variants += [v + BEFORE for v in http_variants if v in TXTOKEN_VARIANTS]
            grpc_variants += [v + BEFORE for v in grpc_variants if v in TXTOKEN_VARIANTS]
        http_servers = {v: start_server("http", v, jwks_file, stack, args.before) for v in http_variants}
        grpc_servers = {v: start_server("grpc", v, jwks_file, stack, args.before) for v in grpc_variants}
        requests = {
            v: Requests(token, (wit, workload_key) if v.removesuffix(BEFORE) in WIMSE_VARIANTS else None)
            for v in http_variants
        }
        print(f"{args.alg} token of {len(token)} bytes; {args.rounds} rounds of {args.seconds}s per variant\n")
        http = measure(http_load, http_servers, requests, args.rounds, args.seconds, args.connections)
        report(f"HTTP: uvicorn (1 worker) + Starlette, {args.connections} keep-alive connections", http)
        grpc = Measured({}, {})
        if grpc_servers:
            grpc_requests = {v: Requests(token) for v in grpc_servers}
            grpc = measure(grpc_load, grpc_servers, grpc_requests, args.rounds, args.seconds, args.connections)
            report(f"gRPC: grpc.aio server, unary, {args.connections} concurrent calls", grpc)
    report_goals(http, "HTTP")
    report_goals(http, "WIMSE")
    report_goals(grpc, "gRPC")


if __name__ == "__main__":
    main()
