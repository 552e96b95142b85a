"""What the telemetry hooks cost a cached verification (the cheapest, so the worst case for the ratio), in one run.

- ``bare``: the verification without its hook point (``TxnTokenVerifier._verify``): the baseline;
- ``hooked``: ``TxnTokenVerifier.verify`` with no observer installed (the ``otel`` extra absent or unused);
- ``otel``: ``verify`` with :func:`txtoken.otel.instrument` on the OpenTelemetry SDK's providers (a span and two
  metric points per verification; no exporter, so only the recording is measured).

Functions run interleaved in rounds; each ratio is the median over rounds of (rate / bare rate in the same round).

    .venv/bin/python -m benchmarks.telemetry [--rounds 15] [--seconds 0.2]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from benchmarks.verify import TRUST_DOMAIN, _token, interleaved
from txtoken import KeySet, TxnTokenVerifier, otel, telemetry


def run(rounds: int, seconds: float) -> dict[str, tuple[float, float]]:
    keys = KeySet.generate()
    token = _token(keys).encode("ascii")
    verifier = TxnTokenVerifier(keys, trust_domain=TRUST_DOMAIN)
    observer = otel.instrument(tracer_provider=TracerProvider(), meter_provider=MeterProvider([InMemoryMetricReader()]))
    telemetry.set_observer(None)

    def with_observer() -> object:
        telemetry.set_observer(observer)
        try:
            return verifier.verify(token.decode("ascii"))
        finally:
            telemetry.set_observer(None)

    functions: dict[str, Callable[[], object]] = {
        "bare": lambda: verifier._cached(token.decode("ascii")),
        "hooked": lambda: verifier.verify(token.decode("ascii")),
        "otel": with_observer,
    }
    return interleaved(functions, rounds, seconds, baseline="bare")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=0.2, help="per function per round")
    args = parser.parse_args()
    print(f"{'function':<8} {'verifies/s':>11} {'ratio to bare':>14}")
    for name, (rate, ratio) in run(args.rounds, args.seconds).items():
        print(f"{name:<8} {rate:>11,.0f} {ratio:>14.3f}")


if __name__ == "__main__":
    main()
