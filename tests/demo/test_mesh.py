"""The demo mesh end to end: every service a real process on loopback, the scripted scenario, and
`txtoken demo --once` as a newcomer runs it (the viewer: test_viewer.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service_mesh_demo.mesh import Mesh
from service_mesh_demo.runner import format_result
from service_mesh_demo.scenario import STEPS, StepResult
from service_mesh_demo.topology import SERVICES

from .helpers import JWT, free_base_port


def hops(result: StepResult) -> list[dict[str, Any]]:
    return sorted(result.hops, key=lambda h: h["at"])


def test_every_step_of_the_scenario_has_its_expected_outcome(results: dict[str, StepResult]) -> None:
    assert [r.step.label for r in results.values()] == [step.label for step in STEPS]
    failed = {label: (r.step.expected, r.outcome) for label, r in results.items() if not r.passed}
    assert not failed


def test_purchase_carries_txn_sub_and_augmented_context_to_the_last_hop(
    results: dict[str, StepResult], mesh: Mesh
) -> None:
    chain = hops(results["legitimate purchase"])
    shipping = chain[4:]  # the Node.js hop behind nginx, when the local runner could start it
    chain = chain[:4]
    assert [(h["service"], h["protocol"], h["verdict"]) for h in chain] == [
        ("gateway", "http", "ok"),
        ("orders", "http", "ok"),
        ("inventory", "grpc", "ok"),
        ("payments", "http", "ok"),
    ]
    assert "supplier.example" in chain[2]["note"]  # the egress call to another domain, with its own access token
    if "shipping" in mesh.left_out:
        assert shipping == []
    else:
        [hop] = shipping
        assert (hop["service"], hop["verdict"], hop["txn"]) == ("shipping", "ok", chain[0]["txn"])
        assert hop["req_wl"].endswith("/gateway") and "order_id" in hop["tctx_keys"]
    assert len({h["txn"] for h in chain}) == 1  # one transaction across every hop and every replacement
    # each hop saw the token it was sent: the gateway's, then orders' and inventory's replacements
    assert [h["req_wl"].rsplit("/", 1)[-1] for h in chain] == ["gateway", "gateway", "orders", "inventory"]
    # WIMSE: each hop authenticated its caller (the gateway is the edge: its caller is the user's client)
    assert [(h["caller"] or "-").rsplit("/", 1)[-1] for h in chain] == ["-", "gateway", "orders", "inventory"]
    assert chain[1]["scope"] == "orders.create inventory.reserve payments.charge"
    assert chain[2]["scope"] == chain[3]["scope"] == "inventory.reserve payments.charge"  # narrowed by orders
    assert "reservation_id" not in chain[2]["tctx_keys"]
    assert set(chain[3]["tctx_keys"]) == {"order_id", "item", "quantity", "amount", "currency", "reservation_id"}


@pytest.mark.parametrize("label", [step.label for step in STEPS[1:-1]])
def test_attacks_are_refused_at_the_first_hop(results: dict[str, StepResult], label: str) -> None:
    [hop] = hops(results[label])
    assert hop["verdict"] == results[label].step.expected
    assert hop["txn"] is None  # nothing ran inside a transaction


def test_scope_escalation_is_refused_by_the_tts(results: dict[str, StepResult], mesh: Mesh) -> None:
    chain = hops(results["scope escalation at replacement"])
    assert [(h["service"], h["verdict"]) for h in chain] == [("gateway", "invalid_scope"), ("orders", "invalid_scope")]
    audit = mesh.log_tail("tts", lines=200)
    assert 'outcome="refused" error="invalid_scope"' in audit


def test_runner_prints_a_table_of_hops(results: dict[str, StepResult]) -> None:
    table = format_result(results["legitimate purchase"])
    assert table.startswith("✔ 1. legitimate purchase")
    for column in ("service", "protocol", "req_wl", "scope", "tctx keys", "verdict", "ms"):
        assert column in table.splitlines()[2]
    assert "inventory  grpc" in table


def test_no_token_in_any_log_or_hop_report(results: dict[str, StepResult], mesh: Mesh) -> None:
    logs = "".join(path.read_text(encoding="utf-8", errors="replace") for path in mesh.log_dir.glob("*.log"))
    assert "txtoken.audit" in logs
    assert not JWT.search(logs)
    assert not JWT.search(repr([r.hops for r in results.values()]))


def test_txtoken_demo_once_runs_the_scenario_and_exits_0(tmp_path: Path) -> None:
    txtoken = Path(sys.executable).with_name("txtoken")
    base = free_base_port()
    result = subprocess.run(
        [str(txtoken), "demo", "--once", "--base-port", str(base), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(STEPS)} of {len(STEPS)} steps had the expected outcome." in result.stdout
    assert "✘" not in result.stdout
    for service in SERVICES:  # every service was stopped
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", base + service.offset)) != 0
