"""``txtoken demo``: start the mesh, run the scenario, print each transaction hop by hop, keep serving."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from service_mesh_demo.mesh import Mesh, MeshError
from service_mesh_demo.scenario import StepResult, run_scenario
from service_mesh_demo.topology import DEFAULT_BASE_PORT
from txtoken.logs import LOG_LEVELS

__all__ = ["format_result", "main", "report", "summary"]

_COLUMNS = ("service", "protocol", "caller", "req_wl", "scope", "tctx keys", "verdict", "ms")


def _short_workload(req_wl: str | None) -> str:
    return (req_wl or "-").rsplit("/", 1)[-1]


def format_result(result: StepResult) -> str:
    """One transaction: a heading with the expected and actual outcome, then a table of its hops."""
    mark = "✔" if result.passed else "✘"
    txn = next((h["txn"] for h in result.hops if h.get("txn")), None)
    lines = [
        f"{mark} {result.trace} — {result.step.explanation}",
        f"  expected {result.step.expected}, got {result.outcome.verdict} ({result.outcome.status})"
        + (f"; txn {txn}" if txn else ""),
    ]
    rows = [_COLUMNS] + [
        (
            hop["service"],
            hop["protocol"],
            _short_workload(hop.get("caller")),
            _short_workload(hop.get("req_wl")),
            hop.get("scope") or "-",
            ",".join(hop.get("tctx_keys") or []) or "-",
            hop["verdict"],
            f"{hop['ms']:.1f}",
        )
        for hop in sorted(result.hops, key=lambda h: h["at"])
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    for row in rows:
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    notes = [f"    {hop['service']}: {hop['note']}" for hop in result.hops if hop.get("note")]
    reasons = [f"    {hop['service']} refused: {hop['reason']}" for hop in result.hops if hop.get("reason")]
    return "\n".join(lines + notes + reasons)


def summary(results: Sequence[StepResult]) -> str:
    """The scenario's last line: how many steps had their expected outcome."""
    return f"{sum(result.passed for result in results)} of {len(results)} steps had the expected outcome."


def report(results: Sequence[StepResult]) -> bool:
    """Print every transaction's table and the summary line; whether every step had its expected outcome."""
    for result in results:
        print(format_result(result) + "\n")
    print(summary(results))
    return all(result.passed for result in results)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="txtoken demo", description="Run the demo service mesh and its scenario.")
    parser.add_argument("--once", action="store_true", help="run the scenario, stop every service, exit")
    parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT, help="gateway port; others follow")
    parser.add_argument("--data-dir", type=Path, help="keys, tokens and logs (default: a new temporary directory)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="of every service")
    return parser


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; with ``--once`` the exit status says whether every step had its expected outcome."""
    args = _parser().parse_args(argv)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="txtoken-demo-"))
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started where SIGINT was ignored
    mesh = Mesh(data_dir, base_port=args.base_port, log_level=args.log_level)
    print(f"Starting the mesh ({len(mesh.services)} processes on 127.0.0.1:{args.base_port}-{args.base_port + 9})…")
    for name, why in mesh.left_out.items():
        print(f"  left out: {name} ({why}; the docker compose mesh always runs it)")
    try:
        with mesh:
            for service in mesh.services:
                print(f"  {service.name:<10} {service.protocol:<5} {mesh.url(service.name).removeprefix('http://')}")
            print("\nThe scenario: one purchase, then what must be refused.\n")
            passed = report(run_scenario(mesh))
            if args.once:
                return 0 if passed else 1
            print(
                f"\nThe mesh keeps running. Watch the transactions: {mesh.url('gateway')}/\n"
                f"Logs of every service (the TTS's audit lines among them): {mesh.log_dir}\n"
                "Place an order yourself:\n"
                f"  TOKEN=$(curl -s -d grant_type=password -d username=alice -d password=wonderland "
                f"{mesh.url('idp')}/token | python3 -c "
                "'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')\n"
                f"  curl -s -H \"Authorization: Bearer $TOKEN\" -H 'x-demo-trace: my order' "
                f'-d \'{{"item": "gadget", "quantity": 1}}\' {mesh.url("gateway")}/api/orders\n'
                "Press Ctrl-C to stop."
            )
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("\nStopped every service.")
        return 0
    except MeshError as exc:
        print(f"The mesh did not start: {exc}", file=sys.stderr)
        return 1
