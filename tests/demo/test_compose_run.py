"""The compose mesh for real: a Docker engine of the test's own builds the demo image offline, ``docker-compose up``
starts the seven services, the scenario runs from a container on the compose network, and the published IdP and
gateway take an order from the host as the docs' ``curl`` commands place it. The TTS image of deploy/kubernetes is
built the same way and serves as the Deployment runs it (non-root, read-only root file system).

Skipped, saying why, where Docker cannot run (not root, the tools not installed: ``.ci/run`` installs them).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service_mesh_demo.compose import host_port_variable
from service_mesh_demo.scenario import STEPS
from service_mesh_demo.topology import BY_NAME, SERVICES

from .conftest import COMPOSE_REPORT
from .engine import TTS_IMAGE, Engine, EngineUnavailable, why_not_available
from .helpers import JWT, free_base_port

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "service_mesh_demo" / "compose.yaml"
PROJECT = "txtoken-demo-test"
HEALTHY_WITHIN = 240.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    reason = why_not_available()
    if reason:
        pytest.skip(f"docker compose not run: {reason}")
    running = Engine()
    try:
        try:
            running.start()
        except EngineUnavailable as exc:
            pytest.skip(f"docker compose not run: {exc}")
        running.import_base_image()
        running.build_images()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def compose(engine: Engine) -> Iterator[tuple[list[str], dict[str, int]]]:
    """``docker-compose`` on the committed file, its project up and healthy; always taken down."""
    base = free_base_port()
    ports = {"idp": base + 1, "gateway": base}
    for name, port in ports.items():
        engine.env[host_port_variable(BY_NAME[name])] = str(port)
    command = ["docker-compose", "--project-name", PROJECT, "--file", str(COMPOSE_FILE)]
    try:
        up = engine.run([*command, "up", "--detach", "--no-build"], timeout=600, check=False)
        if up.returncode != 0:
            logs = engine.run([*command, "logs", "--no-color", "--tail", "40"], timeout=120, check=False).stdout
            raise AssertionError(f"docker-compose up failed:\n{up.stdout}{up.stderr}\n{logs}")
        wait_healthy(engine, command)
        yield command, ports
    finally:
        engine.run([*command, "--profile", "scenario", "down", "--volumes", "--timeout", "5"], timeout=180, check=False)


def wait_healthy(engine: Engine, command: list[str]) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        ids = engine.run([*command, "ps", "--quiet"], timeout=60).stdout.split()
        inspected = json.loads(engine.run(["docker", "inspect", *ids], timeout=60).stdout) if ids else []
        states = {
            container["Config"]["Labels"]["com.docker.compose.service"]: container["State"]["Health"]["Status"]
            for container in inspected
        }
        if len(states) == len(SERVICES) and set(states.values()) == {"healthy"}:
            return
        time.sleep(1)
    logs = engine.run([*command, "logs", "--tail", "20"], timeout=60, check=False).stdout
    raise AssertionError(f"not healthy within {HEALTHY_WITHIN:.0f}s: {states}\n{logs}")


@pytest.fixture(scope="module")
def scenario(engine: Engine, compose: tuple[list[str], dict[str, int]], request: pytest.FixtureRequest) -> str:
    """The scenario's output, run in a container on the compose network; reported in the terminal summary."""
    command, _ = compose
    result = engine.run([*command, "run", "--rm", "scenario"], timeout=600, check=False)
    request.config.stash[COMPOSE_REPORT] = result.stdout.splitlines() or [result.stderr]
    if result.returncode != 0:
        state = engine.run([*command, "ps"], timeout=60, check=False).stdout
        logs = engine.run([*command, "logs", "--no-color", "--tail", "15"], timeout=60, check=False).stdout
        pytest.fail(f"the scenario failed:\n{result.stdout}{result.stderr[-3000:]}\n{state}\n{logs}")
    return result.stdout


def test_scenario_inside_the_compose_network_has_every_expected_outcome(scenario: str) -> None:
    assert scenario.rstrip().endswith(f"{len(STEPS)} of {len(STEPS)} steps had the expected outcome.")
    for number, step in enumerate(STEPS, start=1):
        assert f"✔ {number}. {step.label}" in scenario
    assert "✘" not in scenario
    # the same hop tables as the local runner: the purchase crossed all four services, gRPC included
    assert "inventory  grpc" in scenario
    assert not JWT.search(scenario)


def test_tts_audit_shows_the_exchange_and_both_replacements(
    engine: Engine, compose: tuple[list[str], dict[str, int]], scenario: str
) -> None:
    command, _ = compose
    audit = engine.run([*command, "logs", "--no-color", "tts"], timeout=60).stdout
    assert 'outcome="refused" error="invalid_scope"' in audit
    assert audit.count('outcome="issued"') >= 3  # the purchase: one exchange, two replacements
    assert not JWT.search(audit)


def test_the_docs_order_commands_work_from_the_host(compose: tuple[list[str], dict[str, int]], scenario: str) -> None:
    """docs/demo.md: get alice's token from the IdP, place an order at the gateway, both published on loopback."""
    _, ports = compose
    form = {"grant_type": "password", "username": "alice", "password": "wonderland"}
    with httpx.Client(timeout=30) as http:
        token = http.post(f"http://127.0.0.1:{ports['idp']}/token", data=form).json()["access_token"]
        order = http.post(
            f"http://127.0.0.1:{ports['gateway']}/api/orders",
            json={"item": "gadget", "quantity": 1},
            headers={"authorization": f"Bearer {token}", "x-demo-trace": "my order"},
        )
        assert order.status_code == 200, order.text
        assert order.json()["status"] == "placed"
        viewer = http.get(f"http://127.0.0.1:{ports['gateway']}/demo/transactions").json()
    assert "my order" in [transaction["trace"] for transaction in viewer]


def test_tts_image_serves_as_the_kubernetes_deployment_runs_it(engine: Engine) -> None:
    """deploy/Dockerfile: as user 65532 on a read-only root file system, ``txtoken serve`` becomes ready."""
    data = "/var/lib/txtoken"  # the development default's key, on a writable tmpfs (the Deployment mounts a Secret)
    run = ["docker", "run", "--detach", "--read-only", f"--tmpfs={data}:mode=1777", f"--env=TXTOKEN_DATA_DIR={data}"]
    container = engine.run([*run, TTS_IMAGE, "serve"], timeout=120).stdout.strip()
    try:
        probe = "import httpx, sys; sys.exit(httpx.get('http://127.0.0.1:8400/readyz').status_code != 200)"
        deadline = time.monotonic() + 60
        while engine.run(["docker", "exec", container, "python", "-c", probe], timeout=60, check=False).returncode:
            assert time.monotonic() < deadline, engine.run(["docker", "logs", container], timeout=60).stderr
            time.sleep(1)
        user = engine.run(["docker", "exec", container, "id", "-u"], timeout=60).stdout.strip()
        assert user == "65532"
    finally:
        engine.run(["docker", "rm", "--force", container], timeout=120, check=False)
